"""Every supported encoding converts to the BGR frame we build independently; bad frames raise FrameError."""

import cv2
import numpy as np
import pytest
from bombs import hostile_compressed, png_declaring
from hypothesis import given, settings
from sensor_msgs.msg import CompressedImage, Image

from visual_anomaly.data.image_conversion import FrameError, compressed_to_bgr, image_to_array, image_to_bgr

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)


def _message(encoding: str, pixels: np.ndarray, padding: int = 0, bigendian: bool = False) -> Image:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8)
    if padding:
        rows = np.hstack([rows, np.full((height, padding), 0xAB, np.uint8)])
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def _yuv_from_bgr(bgr: np.ndarray, order: str) -> tuple[np.ndarray, np.ndarray]:
    """Pack 4:2:2 bytes by hand from BT.601 YUV, and the BGR that OpenCV gives back from them."""
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV).astype(np.int32)
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    u2 = ((u[:, 0::2] + u[:, 1::2]) // 2).astype(np.uint8)
    v2 = ((v[:, 0::2] + v[:, 1::2]) // 2).astype(np.uint8)
    y0, y1 = y[:, 0::2].astype(np.uint8), y[:, 1::2].astype(np.uint8)
    quads = np.stack([u2, y0, v2, y1] if order == 'uyvy' else [y0, u2, y1, v2], axis=-1)
    packed = quads.reshape(bgr.shape[0], bgr.shape[1], 2)
    code = cv2.COLOR_YUV2BGR_UYVY if order == 'uyvy' else cv2.COLOR_YUV2BGR_YUY2
    return packed, cv2.cvtColor(packed, code)


@pytest.mark.parametrize('padding', [0, 5])
@pytest.mark.parametrize(
    ('encoding', 'pixels', 'expected'),
    [
        ('bgr8', BGR, BGR),
        ('rgb8', BGR[..., ::-1].copy(), BGR),
        ('bgra8', np.dstack([BGR, np.full(BGR.shape[:2], 200, np.uint8)]), BGR),
        ('rgba8', np.dstack([BGR[..., ::-1], np.full(BGR.shape[:2], 9, np.uint8)]), BGR),
        ('mono8', BGR[..., 0].copy(), np.repeat(BGR[..., :1], 3, axis=2)),
    ],
)
def test_byte_encodings(encoding, pixels, expected, padding):
    np.testing.assert_array_equal(image_to_bgr(_message(encoding, pixels, padding)), expected)


@pytest.mark.parametrize('bigendian', [False, True])
def test_mono16_scales_to_eight_bits(bigendian):
    values = RNG.integers(0, 65536, size=(4, 6), dtype=np.uint16)
    stored = values.astype('>u2' if bigendian else '<u2')
    frame = image_to_bgr(_message('mono16', stored, padding=2, bigendian=bigendian))
    expected = (values.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    np.testing.assert_array_equal(frame[..., 0], expected)
    np.testing.assert_array_equal(frame[..., 2], expected)


@pytest.mark.parametrize(
    ('encoding', 'order'), [('yuv422', 'uyvy'), ('uyvy', 'uyvy'), ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')]
)
def test_yuv422_variants(encoding, order):
    packed, expected = _yuv_from_bgr(BGR, order)
    np.testing.assert_array_equal(image_to_bgr(_message(encoding, packed, padding=4)), expected)


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'encoding': '32FC1'}, 'unsupported encoding'),
        ({'width': 0}, 'bad frame size'),
        ({'height': 100000}, 'bad frame size'),
        ({'step': 10}, 'step'),
        ({'data': b'\x00' * 20}, 'truncated'),
        ({'data': b''}, 'truncated'),
    ],
)
def test_inconsistent_frames_are_refused(change, message):
    msg = _message('bgr8', BGR)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(FrameError, match=message):
        image_to_bgr(msg)


def test_odd_width_yuv_is_refused():
    msg = _message('yuv422', np.zeros((2, 3, 2), np.uint8))
    with pytest.raises(FrameError, match='even width'):
        image_to_bgr(msg)


@pytest.mark.parametrize('extension', ['.png', '.jpg'])
def test_compressed_frames_decode(extension):
    ok, encoded = cv2.imencode(extension, BGR)
    msg = CompressedImage(format=extension[1:])
    msg.data = encoded.tobytes()
    frame = compressed_to_bgr(msg)
    assert frame.shape == BGR.shape
    if extension == '.png':
        np.testing.assert_array_equal(frame, BGR)


@pytest.mark.parametrize('data', [b'', b'not an image', b'\xff\xd8\xff\xe0' + b'\x00' * 30])
def test_undecodable_compressed_frames_are_refused(data):
    msg = CompressedImage(format='jpeg')
    msg.data = data
    with pytest.raises(FrameError):
        compressed_to_bgr(msg)


@pytest.mark.parametrize(
    ('width', 'height', 'message'),
    [
        (5000, 5000, 'declares 5000x5000 pixels, more than the 16,777,216 allowed'),
        (30000, 30000, 'declares more than 89,478,485 pixels'),
        (65535, 65535, 'declares more than 89,478,485 pixels'),
    ],
)
def test_compressed_frames_declaring_too_many_pixels_are_refused_before_decoding(width, height, message):
    msg = CompressedImage(format='png')
    msg.data = png_declaring(width, height)
    assert len(msg.data) < 100_000
    with pytest.raises(FrameError, match=message):
        compressed_to_bgr(msg)
    msg.data = png_declaring(64, 48)
    assert compressed_to_bgr(msg).shape == (48, 64, 3)
    assert compressed_to_bgr(msg, max_pixels=64 * 48).shape == (48, 64, 3)
    with pytest.raises(FrameError, match='more than the 3,071 allowed'):
        compressed_to_bgr(msg, max_pixels=64 * 48 - 1)


def test_raw_frames_above_the_pixel_limit_are_refused():
    msg = _message('rgb8', np.zeros((4, 6, 3), np.uint8))
    assert image_to_bgr(msg).shape == (4, 6, 3)
    with pytest.raises(FrameError, match='frame of 6x4 pixels, more than the 23 allowed'):
        image_to_array(msg, max_pixels=23)


FUZZ_LIMIT = 1_000_000  # pixels: what a declared size may reach before decoding (kept small: fast examples)


@settings(max_examples=300, deadline=None)
@given(hostile=hostile_compressed())
def test_any_compressed_frame_decodes_within_the_limit_or_is_refused_in_one_sentence(hostile):
    msg = CompressedImage(format=hostile[0])
    msg.data = hostile[1]
    try:
        frame = compressed_to_bgr(msg, max_pixels=FUZZ_LIMIT)
    except FrameError as error:
        text = str(error)
        assert text and '\n' not in text, text
        assert not any(word in text for word in ('cv2', 'OpenCV', 'Traceback', 'PIL.')), text
        return
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert 0 < frame.shape[0] * frame.shape[1] <= FUZZ_LIMIT
