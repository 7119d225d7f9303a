"""ament_python package definition for visual_anomaly.

Two import packages: ``visual_anomaly`` (the runtime a robot needs) and ``training`` (fits its
models; imports ``visual_anomaly``, never the reverse). Folder paths are import paths.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'visual_anomaly'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*', 'training', 'training.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.rviz')),
        (f'share/{PACKAGE}/models', glob('models/*.pt') + glob('models/*.onnx') + glob('models/*.md')),
    ],
    python_requires='>=3.10',
    # Runtime dependencies come from rosdep (package.xml) on robots and from requirements.txt
    # elsewhere; listing them here would make ROS entry points demand pip distributions.
    install_requires=['setuptools'],
    # 'fleet': many bags at once on Ray (visual-anomaly-bag evaluate MODEL FOLDER...); never needed on a robot.
    extras_require={'test': ['pytest', 'hypothesis', 'catkin_pkg'], 'fleet': ['ray']},
    zip_safe=True,
    maintainer='visual_anomaly maintainers',
    maintainer_email='maintainers@visual-anomaly.dev',
    description='Visual anomaly detection for mobile robots (ROS 2 node and training package).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'visual-anomaly-demo = visual_anomaly.cli.demo:main',
            'visual-anomaly-train = visual_anomaly.cli.train:main',
            'visual-anomaly-node = visual_anomaly.cli.node:main',
            'visual-anomaly-bag = visual_anomaly.cli.bag:main',
        ],
    },
)
