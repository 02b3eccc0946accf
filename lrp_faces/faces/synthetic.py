"""Synthetic aligned, frontal faces with identities, a gender attribute, nuisance variation and ground-truth regions.

Identity is carried by the geometry and colour of the eyes, nose and mouth; gender by the jaw, the brows and the hair
length. Face shape, skin tone and hair colour vary only mildly between identities and the hair style varies from image
to image, so that each task's signal lies in its regions. Each image comes with a region label map, so those regions
are known exactly (:data:`TASK_REGIONS`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from . import _draw as draw
from ._draw import FLOAT, column, ellipse
from ._indexing import selected_indices
from ..errors import LRPFacesError

__all__ = ["REGIONS", "TASK_REGIONS", "FACE_PARAMETERS", "IMAGE_PARAMETERS", "PARAMETER_NAMES", "GENDER_NAMES",
           "SyntheticFaces", "synthetic_faces", "render_faces", "parameter_dissimilarity", "SyntheticDataError"]

REGIONS = ("background", "skin", "hair", "left_eye", "right_eye", "brows", "nose", "mouth", "jaw")
"""Region names, in the order of the values of the region label maps. ``left_eye`` is the eye on the image's left."""
TASK_REGIONS = {"identity": ("left_eye", "right_eye", "nose", "mouth"), "gender": ("jaw", "brows", "hair")}
"""The regions that carry the signal of each task."""
GENDER_NAMES = ("female", "male")
"""Gender class names: 0 = female, 1 = male (as CelebA's ``Male`` attribute)."""

FACE_PARAMETERS = ("face_width", "face_height", "jaw_width", "eye_size", "eye_openness", "eye_spacing", "eye_height",
                   "brow_thickness", "brow_angle", "nose_length", "nose_width", "mouth_width", "mouth_thickness",
                   "lip_colour", "skin_tone", "iris_colour", "hair_length", "hair_fringe", "hair_parting",
                   "hair_lightness", "hair_redness")
"""Face parameters, in face units (the image spans [-1, 1]) or in [0, 1] for colours, jaw and hair shape. They are
fixed per identity, except the hair style (length, fringe, parting), which varies a little per image."""
IMAGE_PARAMETERS = ("expression", "shift_x", "shift_y", "rotation", "scale", "light_angle", "light_strength",
                    "brightness")
"""Per-image parameters: expression (mouth curve) and nuisance (pose, scale, lighting)."""
PARAMETER_NAMES = FACE_PARAMETERS + IMAGE_PARAMETERS
_INDEX = {name: k for k, name in enumerate(PARAMETER_NAMES)}
_REGION = {name: k for k, name in enumerate(REGIONS)}
_FACE_CENTRE_Y = 0.05
_PIXEL_NOISE = 0.02


class SyntheticDataError(LRPFacesError, ValueError):
    """Invalid arguments for a synthetic data set."""


def require_integers(**arguments: tuple) -> None:
    """Check each ``name=(value, minimum)``: an integer (not a bool) at least ``minimum``."""
    for name, (value, low) in arguments.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise SyntheticDataError(f"{name} must be an integer >= {low}, got {value!r}")


# Identity parameters: (centre for women, centre for men, width); each identity draws uniformly in centre +- width / 2.
# Eye, nose and mouth geometry and the iris and lip colours vary strongly; the gender features (jaw, brows, hair
# length) are shifted strongly by gender and vary mildly within it; face shape, skin, hair colour and shape vary
# mildly, so that the regions of each task carry its signal.
IDENTITY_DISTRIBUTION = {
    "face_width": (0.555, 0.555, 0.02), "face_height": (0.695, 0.695, 0.02),
    "jaw_width": (0.25, 0.75, 0.10), "eye_size": (0.115, 0.115, 0.05), "eye_openness": (0.6, 0.6, 0.2),
    "eye_spacing": (0.24, 0.24, 0.12), "eye_height": (-0.07, -0.07, 0.10), "brow_thickness": (0.044, 0.082, 0.012),
    "brow_angle": (0.0, 0.0, 0.08),
    "nose_length": (0.215, 0.215, 0.11), "nose_width": (0.075, 0.075, 0.05), "mouth_width": (0.175, 0.175, 0.11),
    "mouth_thickness": (0.045, 0.045, 0.03), "lip_colour": (0.5, 0.5, 1.0), "skin_tone": (0.4, 0.4, 0.1),
    "iris_colour": (0.5, 0.5, 1.0), "hair_length": (0.83, 0.10, 0.18), "hair_fringe": (0.5, 0.5, 0.15),
    "hair_parting": (0.0, 0.0, 0.4), "hair_lightness": (0.3, 0.3, 0.1), "hair_redness": (0.15, 0.15, 0.08),
}


def _identity_parameters(seed: int, identity: int, male: bool) -> np.ndarray:
    u = np.random.default_rng([seed, 0, identity]).random(len(FACE_PARAMETERS))
    return np.array([IDENTITY_DISTRIBUTION[name][int(male)] + IDENTITY_DISTRIBUTION[name][2] * (u[k] - 0.5)
                     for k, name in enumerate(FACE_PARAMETERS)])


HAIR_STYLE_JITTER = {"hair_length": 0.05, "hair_fringe": 0.12, "hair_parting": 0.25}
"""Per-image standard deviation of the hair style around the identity's (the hair differs from photo to photo)."""


def _image_parameters(seed: int, identity: int, image: int, nuisance: float, face: np.ndarray):
    """One image's parameter row (the face with its hair style, then IMAGE_PARAMETERS) and its render seed."""
    rng = np.random.default_rng([seed, 2, identity, image])
    expression = rng.uniform(-0.02, 0.05)
    shift_x, shift_y = np.clip(rng.normal(0, 0.025, 2), -0.06, 0.06) * nuisance
    rotation = np.clip(rng.normal(0, 0.04), -0.1, 0.1) * nuisance
    scale = np.exp(np.clip(rng.normal(0, 0.02), -0.05, 0.05) * nuisance)
    light_angle, light_strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.25) * nuisance
    brightness = 1.0 + rng.uniform(-0.15, 0.1) * nuisance
    face = face.copy()
    for name, spread in HAIR_STYLE_JITTER.items():
        face[FACE_PARAMETERS.index(name)] += np.clip(rng.normal(0, spread), -2 * spread, 2 * spread) * nuisance
    values = [expression, shift_x, shift_y, rotation, scale, light_angle, light_strength, brightness]
    return np.concatenate([face, values]), int(rng.integers(2 ** 62))


def _gender(seed: int, identity: int) -> int:
    """Balanced: in each pair of identities (2j, 2j+1) one is male, which one is random."""
    male_first = int(np.random.default_rng([seed, 1, identity // 2]).integers(2))
    return int((identity % 2 == 0) == bool(male_first))


def synthetic_faces(n_identities: int, images_per_identity: int, size: int = 64, seed: int = 0,
                    task: str = "identity", *, nuisance: float = 1.0) -> "SyntheticFaces":
    """Generate aligned, frontal synthetic faces, identity-major, with ground-truth region maps.

    Parameters
    ----------
    n_identities, images_per_identity : int
        N = n_identities * images_per_identity images; identity k's images are ``k * images_per_identity ...``.
    size : int
        Image height and width in pixels (at least 16; 64 is the default working size).
    seed : int
        Non-negative seed. The same arguments always give bit-identical data; identity k and its image j do not
        depend on how many identities or images are generated.
    task : {"identity", "gender"}
        The label returned by ``dataset[i]``.
    nuisance : float
        Scales the per-image nuisance: pose, scale, lighting, hair style, background clutter and pixel noise (0
        gives clean, perfectly aligned images). Expression is not scaled.

    Returns
    -------
    SyntheticFaces
    """
    require_integers(n_identities=(n_identities, 1), images_per_identity=(images_per_identity, 1), size=(size, 16),
                     seed=(seed, 0))
    if not 0.0 <= float(nuisance) <= 2.0:
        raise SyntheticDataError(f"nuisance must be in [0, 2], got {nuisance!r}")
    _check_task(task)
    if task == "gender" and n_identities < 2:
        raise SyntheticDataError("task='gender' needs n_identities >= 2 (one of each gender per pair of identities)")
    genders = np.array([_gender(seed, k) for k in range(n_identities)], dtype=np.int64)
    faces = [_identity_parameters(seed, k, bool(genders[k])) for k in range(n_identities)]
    rows, render_seeds = [], []
    for k in range(n_identities):
        for j in range(images_per_identity):
            row, render_seed = _image_parameters(seed, k, j, float(nuisance), faces[k])
            rows.append(row)
            render_seeds.append(render_seed)
    parameters = np.array(rows)
    render_seeds = np.array(render_seeds, dtype=np.int64)
    images, regions = render_faces(parameters, render_seeds, size, nuisance=nuisance)
    identity = np.repeat(np.arange(n_identities, dtype=np.int64), images_per_identity)
    id_digits, image_digits = max(3, len(str(n_identities - 1))), max(2, len(str(images_per_identity - 1)))
    image_ids = [f"id{k:0{id_digits}d}_img{j:0{image_digits}d}" for k in range(n_identities)
                 for j in range(images_per_identity)]
    return SyntheticFaces(torch.from_numpy(images), identity, genders[identity], regions, parameters, PARAMETER_NAMES,
                          image_ids, task, size, n_identities, render_seeds, float(nuisance))


def render_faces(parameters: np.ndarray, render_seeds: Sequence[int], size: int = 64, *, nuisance: float = 1.0,
                 batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render faces from their generative parameters.

    Parameters
    ----------
    parameters : ndarray (N, P)
        Columns as :data:`PARAMETER_NAMES`.
    render_seeds : sequence of int (N,)
        Seeds of the background clutter and pixel noise of each image.
    size : int
        Image size in pixels.
    nuisance : float
        Scales the background clutter and the pixel noise (the other nuisance is in ``parameters``).
    batch_size : int, optional
        Images rendered at once (default: about 130,000 pixels per batch, cache-friendly). Does not change the result.

    Returns
    -------
    images : ndarray (N, 3, size, size) float32 in [0, 1]
    regions : ndarray (N, size, size) uint8, values index :data:`REGIONS`
    """
    parameters = np.asarray(parameters, dtype=np.float64)
    if parameters.ndim != 2 or parameters.shape[1] != len(PARAMETER_NAMES):
        raise SyntheticDataError(f"parameters must have shape (N, {len(PARAMETER_NAMES)}) with columns "
                                 f"{PARAMETER_NAMES}, got {parameters.shape}")
    render_seeds = np.asarray(render_seeds, dtype=np.int64).reshape(-1)
    if len(render_seeds) != len(parameters):
        raise SyntheticDataError(f"got {len(render_seeds)} render_seeds for {len(parameters)} parameter rows")
    count = len(parameters)
    batch_size = batch_size or max(1, 2 ** 17 // (size * size))
    images = np.empty((count, 3, size, size), dtype=FLOAT)
    regions = np.empty((count, size, size), dtype=np.uint8)
    for start in range(0, count, batch_size):
        stop = min(count, start + batch_size)
        batch, batch_regions = _render_batch(parameters[start:stop], render_seeds[start:stop], size, nuisance)
        images[start:stop] = batch.transpose(0, 3, 1, 2)
        regions[start:stop] = batch_regions
    return images, regions


def _skin_colour(tone):
    light, dark = np.array([0.97, 0.82, 0.70]), np.array([0.42, 0.27, 0.18])
    return light + np.asarray(tone)[:, None] * (dark - light)


def _hair_colour(lightness, redness):
    dark, blond, red = np.array([0.10, 0.07, 0.05]), np.array([0.86, 0.72, 0.42]), np.array([0.62, 0.24, 0.08])
    colour = dark + np.asarray(lightness)[:, None] * (blond - dark)
    return colour + np.asarray(redness)[:, None] * (red - colour) * 0.8


def _lip_colour(value):
    pale, red = np.array([0.80, 0.45, 0.45]), np.array([0.75, 0.12, 0.20])
    return pale + np.asarray(value)[:, None] * (red - pale)


def _iris_colour(value):
    palette = np.array([[0.30, 0.17, 0.08], [0.45, 0.36, 0.14], [0.28, 0.48, 0.28], [0.25, 0.42, 0.70],
                        [0.45, 0.50, 0.55]])
    position = np.asarray(value) * (len(palette) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(palette) - 2)
    weight = (position - low)[:, None]
    return palette[low] * (1 - weight) + palette[low + 1] * weight


@dataclass(frozen=True, eq=False)
class _FaceBatch:
    """What every part of a batch of faces is drawn with: the painter, the parameters and the face's layout.

    Lengths are in face units (the image spans [-1, 1]); ``column`` holds each parameter as (B, 1, 1) float32,
    ``parameters`` the float64 rows the colours are computed from.
    """

    painter: draw.Painter
    parameters: np.ndarray
    column: dict
    skin: np.ndarray  #: (B, 3) skin colour
    hair: np.ndarray  #: (B, 3) hair colour
    half_width: np.ndarray  #: face half-width (B, 1, 1)
    half_height: np.ndarray  #: face half-height (B, 1, 1)
    centre_y: np.float32  #: vertical centre of the face
    eye_y: np.ndarray  #: vertical centre of the eyes (B, 1, 1)

    def rgb(self, values) -> np.ndarray:
        """A colour, one per image or shared, as (B, 1, 1, 3) float32."""
        return np.broadcast_to(np.asarray(values, dtype=FLOAT), (len(self.parameters), 3))[:, None, None, :]


def _render_batch(parameters, render_seeds, size, nuisance):
    """Render one batch of faces: (B, size, size, 3) float32 images and (B, size, size) uint8 region labels.

    The parts are painted back to front over a cluttered background, then lit and given pixel noise.
    """
    column_of = {name: column(parameters[:, k]) for k, name in enumerate(PARAMETER_NAMES)}
    rngs = [np.random.default_rng(int(seed)) for seed in render_seeds]
    image_x, image_y = draw.pixel_grid(size)
    canvas = draw.cluttered_background(rngs, image_x, image_y, contrast=min(nuisance, 1.0))
    labels = np.zeros(canvas.shape[:3], dtype=np.uint8)
    painter = draw.Painter(canvas, labels, column_of["shift_x"], column_of["shift_y"], column_of["rotation"],
                           column_of["scale"])
    centre_y = FLOAT(_FACE_CENTRE_Y)
    face = _FaceBatch(painter, parameters, column_of, skin=_skin_colour(parameters[:, _INDEX["skin_tone"]]),
                      hair=_hair_colour(parameters[:, _INDEX["hair_lightness"]], parameters[:, _INDEX["hair_redness"]]),
                      half_width=column_of["face_width"], half_height=column_of["face_height"], centre_y=centre_y,
                      eye_y=centre_y + column_of["eye_height"])
    for draw_part in (_draw_neck_and_ears, _draw_back_hair, _draw_face_and_jaw, _draw_fringe, _draw_nose, _draw_mouth,
                      _draw_eyes, _draw_brows):
        draw_part(face)
    _light(canvas, column_of, image_x, image_y)
    if nuisance > 0:
        canvas += draw.pixel_noise(rngs, canvas.shape[1:], _PIXEL_NOISE * nuisance)
    return np.clip(canvas, 0.0, 1.0, out=canvas), labels


def _draw_neck_and_ears(face: _FaceBatch) -> None:
    """The neck and the ears, behind the hair and the face; both are skin."""
    painter, width, centre_y, eye_y = face.painter, face.half_width, face.centre_y, face.eye_y
    window = painter.window(-0.5 * width, 0.5 * width, centre_y + 0.5 * face.half_height, 1.2)
    x, y = painter.coordinates(window)
    neck_shadow = 1.0 - 0.3 * np.clip(1.0 - (y - centre_y - face.half_height * 0.85) / 0.2, 0, 1)
    painter.layer(window, draw.box(x, y, 0.0, centre_y + face.half_height + 0.3, 0.5 * width, 0.5, 0.05),
                  face.rgb(face.skin * 0.85) * neck_shadow[..., None], _REGION["skin"])
    for side in (-1.0, 1.0):
        window = painter.window(side * (width - 0.07), side * (width + 0.1), eye_y - 0.05, eye_y + 0.25)
        x, y = painter.coordinates(window)
        painter.layer(window, ellipse(x, y, side * (width + 0.005), eye_y + 0.1, 0.07, 0.13), face.rgb(face.skin * 0.9),
                      _REGION["skin"])
        painter.layer(window, ellipse(x, y, side * (width + 0.025), eye_y + 0.1, 0.028, 0.07),
                      face.rgb(face.skin * 0.68), opacity=0.7)


def _hair_strands(x, y, centre_y) -> np.ndarray:
    """Brightness of the hair's strands: fine stripes that fan out from above the head."""
    return 1.0 + 0.12 * np.sin(28.0 * np.arctan2(x, y - centre_y + 0.9) + 3.0 * np.sin(6.0 * y))


def _draw_back_hair(face: _FaceBatch) -> None:
    """The hair behind the face: a cap around the head, down to the hair length."""
    painter, width, centre_y, length = face.painter, face.half_width, face.centre_y, face.column["hair_length"]
    hair_end = centre_y - 0.18 + 1.15 * length
    hair_half_width = width + 0.08 + 0.06 * length
    window = painter.window(-hair_half_width, hair_half_width, centre_y - face.half_height - 0.12, hair_end + 0.02)
    x, y = painter.coordinates(window)
    cap = ellipse(x, y, 0.0, centre_y - 0.03, width + 0.07 + 0.04 * length, face.half_height + 0.08)
    sides = draw.box(x, y, 0.0, (centre_y + hair_end) / 2, hair_half_width,
                     np.maximum((hair_end - centre_y) / 2, 0.01), 0.12)
    painter.layer(window, np.maximum(np.minimum(cap, sides), y - hair_end),
                  face.rgb(face.hair * 0.85) * _hair_strands(x, y, centre_y)[..., None], _REGION["hair"])


def _draw_face_and_jaw(face: _FaceBatch) -> None:
    """The face, round on top and a superellipse below whose exponent is the jaw width; the jaw is the lower face.

    The jaw region is the lower face around a fixed cut-out that holds the mouth, so its shape is the face's.
    """
    painter, width, height, centre_y = face.painter, face.half_width, face.half_height, face.centre_y
    window = painter.window(-width, width, centre_y - height, centre_y + height)
    x, y = painter.coordinates(window)
    exponent = np.where(y < centre_y, FLOAT(2.0), 1.8 + 2.6 * face.column["jaw_width"]).astype(FLOAT)
    radial = ((np.abs(x) / width) ** exponent + (np.abs(y - centre_y) / height) ** exponent) ** (1.0 / exponent)
    outline = (radial - 1.0) * width
    shading = (0.22 * np.clip(1.0 + outline / 0.14, 0.0, 1.0) ** 2
               * (1.0 + 0.8 * np.clip((y - centre_y) / 0.25, 0.0, 1.0)))
    painter.layer(window, outline, face.rgb(face.skin) * (1.0 - shading)[..., None], _REGION["skin"])
    mouth_area = ellipse(x, y, 0.0, centre_y + 0.55 * height - 0.01, 0.27, 0.12)
    painter.label(window, np.maximum(np.maximum(outline, centre_y + 0.45 * height - y), -mouth_area), _REGION["jaw"])


def _draw_fringe(face: _FaceBatch) -> None:
    """The fringe: the hair on the forehead, above a hairline set by the fringe and the parting."""
    painter, width, height, centre_y = face.painter, face.half_width, face.half_height, face.centre_y
    window = painter.window(-width - 0.02, width + 0.02, centre_y - height - 0.02, centre_y - 0.45 * height + 0.28)
    x, y = painter.coordinates(window)
    hairline = (centre_y - height * (0.74 - 0.26 * face.column["hair_fringe"]) + 0.22 * (x / width) ** 2
                + 0.06 * face.column["hair_parting"] * x / width)
    painter.layer(window, np.maximum(ellipse(x, y, 0.0, centre_y - 0.02, width + 0.02, height + 0.02), y - hairline),
                  face.rgb(face.hair) * _hair_strands(x, y, centre_y)[..., None], _REGION["hair"])


def _draw_nose(face: _FaceBatch) -> None:
    """The nose: a tapered region from between the eyes to below the tip, a side shadow, the wings and nostrils."""
    painter, skin = face.painter, face.skin
    nose_top, nose_tip = face.eye_y + 0.02, face.eye_y + face.column["nose_length"]
    nose_width = face.column["nose_width"]
    window = painter.window(-nose_width - 0.05, nose_width + 0.05, nose_top - 0.02, nose_tip + 0.06)
    x, y = painter.coordinates(window)
    along = np.clip((y - nose_top) / (nose_tip + 0.045 - nose_top), 0.0, 1.0)  # 0 at the top, 1 below the tip
    half_width = 0.035 + (nose_width + 0.03 - 0.035) * along ** 1.5
    nose = np.maximum(np.maximum(np.abs(x) - half_width, nose_top - y), y - nose_tip - 0.045)
    painter.label(window, nose, _REGION["nose"])
    painter.layer(window, np.maximum(np.abs(x - 0.55 * half_width) - 0.3 * half_width, np.abs(along - 0.5) - 0.45),
                  face.rgb(skin * 0.7), opacity=0.5)
    wings = np.maximum(ellipse(x, y, 0.0, nose_tip - 0.005, nose_width + 0.01, 0.045), nose_tip - 0.015 - y)
    painter.layer(window, wings, face.rgb(skin * 0.72), opacity=0.7)
    for side in (-1.0, 1.0):
        painter.layer(window, ellipse(x, y, side * 0.45 * nose_width, nose_tip + 0.012, 0.028, 0.016),
                      face.rgb(skin * 0.25), opacity=0.9)


def _draw_mouth(face: _FaceBatch) -> None:
    """The mouth: two lips around a curved centre line (expression lifts the corners), a dark slit between them."""
    painter, expression = face.painter, face.column["expression"]
    mouth_y = face.centre_y + 0.55 * face.half_height
    mouth_width, thickness = face.column["mouth_width"], face.column["mouth_thickness"]
    reach = np.abs(expression) + 1.8 * thickness + 0.03
    window = painter.window(-mouth_width - 0.02, mouth_width + 0.02, mouth_y - reach, mouth_y + reach)
    x, y = painter.coordinates(window)
    across = x / mouth_width  # -1 and 1 at the corners
    profile = np.sqrt(np.clip(1.0 - across * across, 0.0, 1.0))
    centre = mouth_y - expression * across * across
    upper, lower = 0.8 * thickness * profile, thickness * profile
    lips = np.maximum(np.abs(y - centre - (lower - upper) / 2) - (upper + lower) / 2 - 0.004, np.abs(x) - mouth_width)
    lip_colour = 0.35 * face.skin + 0.65 * _lip_colour(face.parameters[:, _INDEX["lip_colour"]])
    painter.layer(window, lips, face.rgb(lip_colour), _REGION["mouth"])
    painter.layer(window, np.maximum(np.abs(y - centre) - 0.008, np.abs(x) - mouth_width * 0.97),
                  face.rgb(lip_colour * 0.35))


def _draw_eyes(face: _FaceBatch) -> None:
    """The eyes: sclera, iris, pupil and upper lid; the left eye is the one on the image's left."""
    painter, eye_y = face.painter, face.eye_y
    radius_x = face.column["eye_size"]
    radius_y = face.column["eye_openness"] * radius_x
    iris = face.rgb(_iris_colour(face.parameters[:, _INDEX["iris_colour"]]))
    for side, region in ((-1.0, "left_eye"), (1.0, "right_eye")):
        eye_x = side * face.column["eye_spacing"]
        window = painter.window(eye_x - radius_x - 0.04, eye_x + radius_x + 0.04, eye_y - radius_y - 0.04,
                                eye_y + radius_y + 0.04)
        x, y = painter.coordinates(window)
        sclera = ellipse(x, y, eye_x, eye_y, radius_x, radius_y)
        painter.label(window, sclera - 0.012, _REGION[region])  # the sclera and its lid line
        painter.layer(window, sclera, face.rgb([0.95, 0.95, 0.93]))
        painter.layer(window, np.maximum(ellipse(x, y, eye_x, eye_y, 0.95 * radius_y, 0.95 * radius_y), sclera), iris)
        painter.layer(window, ellipse(x, y, eye_x, eye_y, 0.45 * radius_y, 0.45 * radius_y),
                      face.rgb([0.04, 0.03, 0.03]))
        upper_lid = np.maximum(np.abs(sclera) - 0.012, y - eye_y + 0.2 * radius_y)
        painter.layer(window, upper_lid, face.rgb(face.skin * 0.25))


def _draw_brows(face: _FaceBatch) -> None:
    """The brows: thick arched strokes at a fixed place above the eyes; the angle raises their outer ends."""
    painter, angle = face.painter, face.column["brow_angle"]
    brow_colour = face.rgb(0.55 * face.hair + 0.45 * np.array([0.12, 0.08, 0.06]))
    thickness, half_length = face.column["brow_thickness"], FLOAT(0.13)
    centre_y = face.centre_y - 0.29 + 0.5 * (0.09 - thickness)
    for side in (-1.0, 1.0):
        centre_x = FLOAT(side * 0.25)
        reach = np.abs(np.tan(angle)) * half_length + thickness + 0.05
        window = painter.window(centre_x - half_length - thickness, centre_x + half_length + thickness,
                                centre_y - reach, centre_y + reach)
        x, y = painter.coordinates(window)
        along = (x - centre_x) * side  # towards the outer end
        line = centre_y - np.tan(angle) * along - 0.03 * (1.0 - (along / half_length) ** 2)
        taper = 1.0 - 0.35 * (np.clip(along / half_length, -1.0, 1.0) + 1.0) / 2
        brow = np.sqrt(np.maximum(np.abs(along) - half_length, 0.0) ** 2 + (y - line) ** 2) - thickness / 2 * taper
        painter.layer(window, brow, brow_colour, _REGION["brows"])


def _light(canvas, column_of: dict, image_x, image_y) -> None:
    """Multiply ``canvas`` in place by the brightness and a linear lighting gradient, in image coordinates."""
    angle = column_of["light_angle"]
    gradient = np.cos(angle) * image_x + np.sin(angle) * image_y
    light = column_of["brightness"] * (1.0 + column_of["light_strength"] * gradient)
    canvas *= light[..., None]


def _check_task(task: str) -> None:
    if task not in TASK_REGIONS:
        raise SyntheticDataError(f"task must be one of {tuple(TASK_REGIONS)}, got {task!r}")


@dataclass(frozen=True, eq=False)
class SyntheticFaces(torch.utils.data.Dataset):
    """Synthetic faces with labels for two tasks, ground-truth region maps and their generative parameters.

    ``dataset[i]`` is ``(image (3, H, W) float32 in [0, 1], label)`` for the current ``task``. Gender is coded
    0 = female, 1 = male. Build with :func:`synthetic_faces`.
    """

    images: torch.Tensor  #: (N, 3, H, W) float32 in [0, 1]
    identity: np.ndarray  #: (N,) int64, contiguous 0 .. n_identities - 1
    gender: np.ndarray  #: (N,) int64, 0 = female, 1 = male
    regions: np.ndarray  #: (N, H, W) uint8, values index REGIONS
    parameters: np.ndarray  #: (N, P) float64, columns parameter_names
    parameter_names: tuple  #: names of the parameter columns
    image_ids: list  #: "id003_img07"
    task: str  #: "identity" or "gender"
    image_size: int
    n_identities: int
    render_seeds: np.ndarray  #: (N,) int64, seeds of clutter and noise (see render_faces)
    nuisance: float = 1.0

    region_names = REGIONS
    task_regions = TASK_REGIONS

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels()[index])

    def labels(self, task: str | None = None) -> np.ndarray:
        """Integer labels (N,) of ``task`` (default: the dataset's task)."""
        task = task or self.task
        _check_task(task)
        return self.identity if task == "identity" else self.gender

    def num_classes(self, task: str | None = None) -> int:
        """Number of classes of ``task``: n_identities, or 2 for gender."""
        task = task or self.task
        _check_task(task)
        return self.n_identities if task == "identity" else 2

    def class_names(self, task: str | None = None) -> tuple[str, ...]:
        """Class names of ``task``: ("id000", ...) or ("female", "male")."""
        task = task or self.task
        _check_task(task)
        digits = max(3, len(str(self.n_identities - 1)))
        return tuple(f"id{k:0{digits}d}" for k in range(self.n_identities)) if task == "identity" else GENDER_NAMES

    def with_task(self, task: str) -> "SyntheticFaces":
        """The same images, labelled for ``task``."""
        _check_task(task)
        return replace(self, task=task)

    def subset(self, indices) -> "SyntheticFaces":
        """The images at ``indices`` (ints or a boolean mask), with identity labels unchanged."""
        indices = selected_indices(len(self), indices)
        return replace(self, images=self.images[torch.from_numpy(indices)], identity=self.identity[indices],
                       gender=self.gender[indices], regions=self.regions[indices],
                       parameters=self.parameters[indices], image_ids=[self.image_ids[i] for i in indices],
                       render_seeds=self.render_seeds[indices])

    def task_mask(self, task: str | None = None) -> np.ndarray:
        """Boolean (N, H, W): the pixels of the regions that carry the signal of ``task``."""
        task = task or self.task
        _check_task(task)
        return self.region_mask(*TASK_REGIONS[task])

    def region_mask(self, *names: str) -> np.ndarray:
        """Boolean (N, H, W): the pixels of the named regions."""
        unknown = [name for name in names if name not in _REGION]
        if unknown:
            raise SyntheticDataError(f"unknown region(s) {unknown}; regions are {REGIONS}")
        return np.isin(self.regions, [_REGION[name] for name in names])


DISSIMILARITY_PARAMETERS = FACE_PARAMETERS + ("expression",)


def parameter_dissimilarity(dataset: SyntheticFaces, metric: str = "euclidean") -> np.ndarray:
    """Dissimilarity of every pair of images in generative-parameter space: a *stand-in for human similarity ratings*.

    Uses the identity parameters (:data:`FACE_PARAMETERS`) and the expression, each z-scored over the data set, and
    ignores pose, lighting, background and noise. No human made these judgements; they only play that role in the
    demo.

    Parameters
    ----------
    dataset : SyntheticFaces
    metric : {"euclidean", "correlation"}
        Euclidean distance, or 1 - Pearson correlation between the z-scored parameter vectors.

    Returns
    -------
    ndarray (N, N) float64, symmetric with a zero diagonal.
    """
    names = list(dataset.parameter_names)
    columns = dataset.parameters[:, [names.index(name) for name in DISSIMILARITY_PARAMETERS]]
    spread = columns.std(0)
    z = (columns - columns.mean(0)) / np.where(spread > 0, spread, 1.0)
    if metric == "euclidean":
        squared = (z * z).sum(1)
        distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * z @ z.T, 0.0))
    elif metric == "correlation":
        centred = z - z.mean(1, keepdims=True)
        norm = np.linalg.norm(centred, axis=1)
        unit = centred / np.where(norm > 0, norm, 1.0)[:, None]
        distance = 1.0 - unit @ unit.T
    else:
        raise SyntheticDataError(f"metric must be 'euclidean' or 'correlation', got {metric!r}")
    np.fill_diagonal(distance, 0.0)
    return (distance + distance.T) / 2
