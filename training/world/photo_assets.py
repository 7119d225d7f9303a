"""What the photo worlds are made of: photographic textures, photo cut-out objects and the buildings' looks.

Every image comes from scikit-image's bundled sample data. scikit-image is a dependency of the
off-robot environment only, so it is imported lazily here, never by the detector or the node.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType

import cv2
import numpy as np

#: Anomaly classes of the photo worlds by code (0 = normal); the names are written into labels.
PHOTO_CLASSES: dict[int, str] = {
    0: 'normal',
    1: 'person',
    2: 'box',
    3: 'animal',
    4: 'small_object',
    5: 'tape',
    6: 'puddle',
    7: 'paper',
    8: 'cable',
    9: 'open_door',
    10: 'debris',
}
#: Classes standing upright on the floor (photo cut-outs); the others are painted on the floor or a wall.
UPRIGHT_CLASSES: tuple[int, ...] = (1, 2, 3, 4)
PHOTO_BUILDINGS: tuple[str, ...] = ('photo-b', 'photo-c')


def _skimage_data() -> ModuleType:
    import skimage.data

    return skimage.data


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An image (grey, RGB or RGBA; bool, uint8 or float) as float32 RGB in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float32)
    elif not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3]


def texture(image: np.ndarray, tint: tuple[float, float, float], contrast: float = 1.0, size: int = 256) -> np.ndarray:
    """A square, partly desaturated, tinted texture made of ``image``, values in [0, 1.2]."""
    rgb = cv2.resize(as_rgb(image), (size, size), interpolation=cv2.INTER_AREA)
    rgb = 0.5 * rgb + 0.5 * rgb.mean(-1, keepdims=True)
    rgb = (rgb - rgb.mean()) * contrast + 0.5
    return np.clip(rgb * np.asarray(tint, np.float32) * 2, 0, 1.2).astype(np.float32)


@dataclass(frozen=True)
class Sprite:
    """A photo cut-out: RGB in [0, 1] and its alpha (1 = the object)."""

    image: np.ndarray
    alpha: np.ndarray


@dataclass(frozen=True)
class Sprites:
    """The photographs the anomalies are cut from."""

    person: Sprite
    animals: tuple[Sprite, ...]
    small: tuple[Sprite, ...]
    box_sources: tuple[np.ndarray, ...]  # photos a box's printed side is cropped from
    coins: np.ndarray  # debris chips
    paper: tuple[np.ndarray, ...]  # printed pages


def _ellipse(height: int, width: int, cy: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : 1 : height * 1j, 0 : 1 : width * 1j]
    return ((((xx - 0.5) / rx) ** 2 + ((yy - cy) / ry) ** 2) < 1).astype(np.float32)


def _person(sd: ModuleType) -> Sprite:
    """The astronaut's photo cut to a standing figure: head disc, torso trapezoid, two legs."""
    image = cv2.resize(as_rgb(sd.astronaut())[20:512, 100:400], (128, 256))
    yy, xx = np.mgrid[0:1:256j, 0:1:128j]
    head = ((xx - 0.5) / 0.2) ** 2 + ((yy - 0.13) / 0.11) ** 2 < 1
    torso = (yy > 0.22) & (yy < 0.66) & (np.abs(xx - 0.5) < 0.22 + 0.25 * (yy - 0.22))
    legs = (yy > 0.62) & (np.abs(np.abs(xx - 0.5) - 0.14) < 0.1)
    return Sprite(image, (head | torso | legs).astype(np.float32))


@functools.cache
def load_sprites() -> Sprites:
    """The anomalies' photographs, loaded once."""
    sd = _skimage_data()
    chelsea, coffee, rocket = as_rgb(sd.chelsea()), as_rgb(sd.coffee()), as_rgb(sd.rocket())
    oval = _ellipse(128, 128, 0.55, 0.45, 0.48)
    horse = cv2.resize((~np.asarray(sd.horse())).astype(np.float32), (128, 104))
    logo = np.asarray(sd.logo()).astype(np.float32) / 255.0
    animals = (
        Sprite(cv2.resize(chelsea[20:300, 60:340], (128, 128)), oval),
        Sprite(cv2.resize(as_rgb(sd.cat())[0:300, 80:380], (128, 128)), oval),
        Sprite(cv2.resize(chelsea[100:200, 100:300], (128, 104)) * 0.8, horse),
    )
    small = (
        Sprite(cv2.resize(coffee[20:300, 170:450], (128, 128)), _ellipse(128, 128, 0.5, 0.45, 0.45)),
        Sprite(logo[..., :3], logo[..., 3]),
        Sprite(cv2.resize(rocket[100:427, 280:400], (64, 160)), np.ones((160, 64), np.float32)),
    )
    box_sources = tuple(
        as_rgb(image)
        for image in (
            sd.coffee(),
            sd.rocket(),
            sd.hubble_deep_field(),
            sd.stereo_motorcycle()[0],
            sd.immunohistochemistry(),
            sd.astronaut(),
            sd.chelsea(),
        )
    )
    return Sprites(_person(sd), animals, small, box_sources, as_rgb(sd.coins()), (as_rgb(sd.text()), as_rgb(sd.page())))


@dataclass(frozen=True)
class Building:
    """The look of one building: textures, geometry, camera and lighting."""

    name: str
    floor: np.ndarray
    wall: np.ndarray
    door: np.ndarray
    posters: tuple[np.ndarray, ...]  # 128x96 RGB, hung between the doors
    interior: np.ndarray  # what an open door shows
    floor_scale: float  # metres per texture repeat
    wall_scale: float
    width: float
    height: float
    camera_height: float
    fov_deg: float
    light_spacing: float
    light_rgb: np.ndarray
    ambient: float
    door_spacing: float
    door_probability: float
    poster_probability: float
    gloss: float
    fog_m: float  # distance over which the view fades to grey (e-folding)
    seed: int


def _posters(images: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(cv2.resize(as_rgb(image), (96, 128)) for image in images)


def _building_b(sd: ModuleType) -> Building:
    """Tuning building: gravel-grey floor, brick walls, neutral bright light, camera 0.35 m, 80 degrees."""
    return Building(
        name='photo-b',
        floor=texture(sd.gravel(), (0.55, 0.53, 0.5), 1.2),
        wall=texture(sd.brick(), (0.62, 0.5, 0.42), 0.8),
        door=texture(np.rot90(sd.grass()), (0.45, 0.32, 0.2), 0.7),
        posters=_posters((sd.camera(), sd.coffee(), sd.stereo_motorcycle()[0], sd.astronaut()[:256])),
        interior=texture(sd.hubble_deep_field()[:512, :512], (0.3, 0.28, 0.3)),
        floor_scale=1.6,
        wall_scale=1.2,
        width=2.4,
        height=2.8,
        camera_height=0.35,
        fov_deg=80.0,
        light_spacing=3.0,
        light_rgb=np.array([1.0, 0.97, 0.9], np.float32),
        ambient=0.35,
        door_spacing=5.0,
        door_probability=0.6,
        poster_probability=0.5,
        gloss=0.25,
        fog_m=18.0,
        seed=11,
    )


def _building_c(sd: ModuleType) -> Building:
    """Held-out building: green brick-tile floor, moon-plaster walls, warm dim light, camera 0.22 m, 100 degrees."""
    return Building(
        name='photo-c',
        floor=texture(sd.brick(), (0.3, 0.42, 0.38)),
        wall=texture(sd.moon(), (0.7, 0.68, 0.6), 0.6),
        door=texture(sd.gravel(), (0.35, 0.4, 0.5), 0.6),
        posters=_posters((sd.rocket(), sd.hubble_deep_field(), sd.cat(), sd.immunohistochemistry(), sd.retina())),
        interior=texture(sd.camera(), (0.35, 0.3, 0.25)),
        floor_scale=1.0,
        wall_scale=2.0,
        width=2.0,
        height=2.6,
        camera_height=0.22,
        fov_deg=100.0,
        light_spacing=4.0,
        light_rgb=np.array([1.0, 0.88, 0.7], np.float32),
        ambient=0.25,
        door_spacing=4.0,
        door_probability=0.7,
        poster_probability=0.35,
        gloss=0.4,
        fog_m=12.0,
        seed=23,
    )


@functools.cache
def load_building(name: str) -> Building:
    """Building ``name`` (one of :data:`PHOTO_BUILDINGS`), loaded once."""
    makers = {'photo-b': _building_b, 'photo-c': _building_c}
    if name not in makers:
        raise ValueError(f'unknown photo building {name!r}; known: {", ".join(PHOTO_BUILDINGS)}')
    return makers[name](_skimage_data())


def photo_class_code(name: str | int) -> int:
    """The code of a photo-world class name (or of a code, as int or text); raises ``ValueError`` naming it."""
    text = str(name).strip().lower()
    if text.isdigit() and int(text) in PHOTO_CLASSES:
        return int(text)
    for code, known in PHOTO_CLASSES.items():
        if known == text:
            return code
    raise ValueError(f'unknown photo-world anomaly class {name!r}; known: {", ".join(PHOTO_CLASSES.values())}')
