"""ROS 2: the only rclpy code of the package.

``node`` (the detector node), ``parameters`` (its parameters and their checks), ``messages`` (what
it publishes), ``process`` (starting it as a process of its own), ``live_replay`` (bags through it),
``dds`` (Fast DDS settings for processes that publish camera frames).
"""
