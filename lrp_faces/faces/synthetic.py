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
GENDER_FEATURES = ("jaw_width", "brow_thickness", "hair_length")
"""The face parameters that gender shifts strongly; the others do not depend on gender."""
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


def _render_batch(parameters, render_seeds, size, nuisance):
    p = {name: column(parameters[:, k]) for k, name in enumerate(PARAMETER_NAMES)}
    count = len(parameters)
    rngs = [np.random.default_rng(int(seed)) for seed in render_seeds]
    image_x, image_y = draw.pixel_grid(size)
    canvas = draw.cluttered_background(rngs, image_x, image_y, contrast=min(nuisance, 1.0))
    labels = np.zeros(canvas.shape[:3], dtype=np.uint8)
    painter = draw.Painter(canvas, labels, p["shift_x"], p["shift_y"], p["rotation"], p["scale"])

    def rgb(values):
        return np.broadcast_to(np.asarray(values, dtype=FLOAT), (count, 3))[:, None, None, :]

    skin = _skin_colour(parameters[:, _INDEX["skin_tone"]])
    hair = _hair_colour(parameters[:, _INDEX["hair_lightness"]], parameters[:, _INDEX["hair_redness"]])
    a, b, cy = p["face_width"], p["face_height"], FLOAT(_FACE_CENTRE_Y)
    eye_y = cy + p["eye_height"]

    # neck and ears, behind the hair and the face
    window = painter.window(-0.5 * a, 0.5 * a, cy + 0.5 * b, 1.2)
    x, y = painter.coordinates(window)
    neck_shadow = 1.0 - 0.3 * np.clip(1.0 - (y - cy - b * 0.85) / 0.2, 0, 1)
    painter.layer(window, draw.box(x, y, 0.0, cy + b + 0.3, 0.5 * a, 0.5, 0.05),
                  rgb(skin * 0.85) * neck_shadow[..., None], _REGION["skin"])
    for side in (-1.0, 1.0):
        window = painter.window(side * (a - 0.07), side * (a + 0.1), eye_y - 0.05, eye_y + 0.25)
        x, y = painter.coordinates(window)
        painter.layer(window, ellipse(x, y, side * (a + 0.005), eye_y + 0.1, 0.07, 0.13), rgb(skin * 0.9),
                      _REGION["skin"])
        painter.layer(window, ellipse(x, y, side * (a + 0.025), eye_y + 0.1, 0.028, 0.07), rgb(skin * 0.68),
                      opacity=0.7)

    # hair behind the face: a cap around the head, down to the hair length
    hair_end = cy - 0.18 + 1.15 * p["hair_length"]
    hair_half_width = a + 0.08 + 0.06 * p["hair_length"]
    window = painter.window(-hair_half_width, hair_half_width, cy - b - 0.12, hair_end + 0.02)
    x, y = painter.coordinates(window)
    cap = ellipse(x, y, 0.0, cy - 0.03, a + 0.07 + 0.04 * p["hair_length"], b + 0.08)
    sides = draw.box(x, y, 0.0, (cy + hair_end) / 2, hair_half_width, np.maximum((hair_end - cy) / 2, 0.01), 0.12)
    strands = 1.0 + 0.12 * np.sin(28.0 * np.arctan2(x, y - cy + 0.9) + 3.0 * np.sin(6.0 * y))
    painter.layer(window, np.maximum(np.minimum(cap, sides), y - hair_end), rgb(hair * 0.85) * strands[..., None],
                  _REGION["hair"])

    # face: round on top, a superellipse below whose exponent is the jaw width; the jaw is the lower face
    window = painter.window(-a, a, cy - b, cy + b)
    x, y = painter.coordinates(window)
    exponent = np.where(y < cy, FLOAT(2.0), 1.8 + 2.6 * p["jaw_width"]).astype(FLOAT)
    radial = ((np.abs(x) / a) ** exponent + (np.abs(y - cy) / b) ** exponent) ** (1.0 / exponent)
    face = (radial - 1.0) * a
    shading = 0.22 * np.clip(1.0 + face / 0.14, 0.0, 1.0) ** 2 * (1.0 + 0.8 * np.clip((y - cy) / 0.25, 0.0, 1.0))
    painter.layer(window, face, rgb(skin) * (1.0 - shading)[..., None], _REGION["skin"])
    # the jaw: the lower face around a fixed cut-out that holds the mouth (so the jaw's shape is the face's)
    mouth_area = ellipse(x, y, 0.0, cy + 0.55 * b - 0.01, 0.27, 0.12)
    painter.label(window, np.maximum(np.maximum(face, cy + 0.45 * b - y), -mouth_area), _REGION["jaw"])

    # fringe: the hair on the forehead, above a hairline
    window = painter.window(-a - 0.02, a + 0.02, cy - b - 0.02, cy - 0.45 * b + 0.28)
    x, y = painter.coordinates(window)
    hairline = cy - b * (0.74 - 0.26 * p["hair_fringe"]) + 0.22 * (x / a) ** 2 + 0.06 * p["hair_parting"] * x / a
    strands = 1.0 + 0.12 * np.sin(28.0 * np.arctan2(x, y - cy + 0.9) + 3.0 * np.sin(6.0 * y))
    painter.layer(window, np.maximum(ellipse(x, y, 0.0, cy - 0.02, a + 0.02, b + 0.02), y - hairline),
                  rgb(hair) * strands[..., None], _REGION["hair"])

    # nose: a tapered region from between the eyes to below the tip, with a side shadow, the wings and nostrils
    nose_top, nose_tip, nose_width = eye_y + 0.02, eye_y + p["nose_length"], p["nose_width"]
    window = painter.window(-nose_width - 0.05, nose_width + 0.05, nose_top - 0.02, nose_tip + 0.06)
    x, y = painter.coordinates(window)
    t = np.clip((y - nose_top) / (nose_tip + 0.045 - nose_top), 0.0, 1.0)
    half_width = 0.035 + (nose_width + 0.03 - 0.035) * t ** 1.5
    nose = np.maximum(np.maximum(np.abs(x) - half_width, nose_top - y), y - nose_tip - 0.045)
    painter.label(window, nose, _REGION["nose"])
    painter.layer(window, np.maximum(np.abs(x - 0.55 * half_width) - 0.3 * half_width, np.abs(t - 0.5) - 0.45),
                  rgb(skin * 0.7), opacity=0.5)
    wings = np.maximum(ellipse(x, y, 0.0, nose_tip - 0.005, nose_width + 0.01, 0.045), nose_tip - 0.015 - y)
    painter.layer(window, wings, rgb(skin * 0.72), opacity=0.7)
    for side in (-1.0, 1.0):
        painter.layer(window, ellipse(x, y, side * 0.45 * nose_width, nose_tip + 0.012, 0.028, 0.016),
                      rgb(skin * 0.25), opacity=0.9)

    # mouth: two lips around a curved centre line (expression lifts the corners), a dark slit between them
    mouth_y, mouth_width, thickness = cy + 0.55 * b, p["mouth_width"], p["mouth_thickness"]
    reach = np.abs(p["expression"]) + 1.8 * thickness + 0.03
    window = painter.window(-mouth_width - 0.02, mouth_width + 0.02, mouth_y - reach, mouth_y + reach)
    x, y = painter.coordinates(window)
    u = x / mouth_width
    profile = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    centre = mouth_y - p["expression"] * u * u
    upper, lower = 0.8 * thickness * profile, thickness * profile
    lips = np.maximum(np.abs(y - centre - (lower - upper) / 2) - (upper + lower) / 2 - 0.004, np.abs(x) - mouth_width)
    lip_colour = 0.35 * skin + 0.65 * _lip_colour(parameters[:, _INDEX["lip_colour"]])
    painter.layer(window, lips, rgb(lip_colour), _REGION["mouth"])
    painter.layer(window, np.maximum(np.abs(y - centre) - 0.008, np.abs(x) - mouth_width * 0.97),
                  rgb(lip_colour * 0.35))

    # eyes: sclera, iris, pupil, upper lid; the left eye is the one on the image's left
    eye_rx = p["eye_size"]
    eye_ry = p["eye_openness"] * eye_rx
    iris = rgb(_iris_colour(parameters[:, _INDEX["iris_colour"]]))
    for side, region in ((-1.0, "left_eye"), (1.0, "right_eye")):
        eye_x = side * p["eye_spacing"]
        window = painter.window(eye_x - eye_rx - 0.04, eye_x + eye_rx + 0.04, eye_y - eye_ry - 0.04,
                                eye_y + eye_ry + 0.04)
        x, y = painter.coordinates(window)
        sclera = ellipse(x, y, eye_x, eye_y, eye_rx, eye_ry)
        painter.label(window, sclera - 0.012, _REGION[region])  # the sclera and its lid line
        painter.layer(window, sclera, rgb([0.95, 0.95, 0.93]))
        painter.layer(window, np.maximum(ellipse(x, y, eye_x, eye_y, 0.95 * eye_ry, 0.95 * eye_ry), sclera), iris)
        painter.layer(window, ellipse(x, y, eye_x, eye_y, 0.45 * eye_ry, 0.45 * eye_ry), rgb([0.04, 0.03, 0.03]))
        painter.layer(window, np.maximum(np.abs(sclera) - 0.012, y - eye_y + 0.2 * eye_ry), rgb(skin * 0.25))

    # brows: thick arched strokes at a fixed place above the eyes; the angle raises their outer ends
    brow_colour = rgb(0.55 * hair + 0.45 * np.array([0.12, 0.08, 0.06]))
    thickness, half_length = p["brow_thickness"], FLOAT(0.13)
    centre_y = cy - 0.29 + 0.5 * (0.09 - thickness)
    for side in (-1.0, 1.0):
        centre_x = FLOAT(side * 0.25)
        reach = np.abs(np.tan(p["brow_angle"])) * half_length + thickness + 0.05
        window = painter.window(centre_x - half_length - thickness, centre_x + half_length + thickness,
                                centre_y - reach, centre_y + reach)
        x, y = painter.coordinates(window)
        along = (x - centre_x) * side
        line = centre_y - np.tan(p["brow_angle"]) * along - 0.03 * (1.0 - (along / half_length) ** 2)
        taper = 1.0 - 0.35 * (np.clip(along / half_length, -1.0, 1.0) + 1.0) / 2
        brow = np.sqrt(np.maximum(np.abs(along) - half_length, 0.0) ** 2 + (y - line) ** 2) - thickness / 2 * taper
        painter.layer(window, brow, brow_colour, _REGION["brows"])

    # lighting gradient, brightness and pixel noise, in image coordinates
    angle = p["light_angle"]
    light = p["brightness"] * (1.0 + p["light_strength"] * (np.cos(angle) * image_x + np.sin(angle) * image_y))
    canvas *= light[..., None]
    if nuisance > 0:
        canvas += draw.pixel_noise(rngs, canvas.shape[1:], _PIXEL_NOISE * nuisance)
    return np.clip(canvas, 0.0, 1.0, out=canvas), labels


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
        return np.isin(self.regions, [_REGION[name] for name in TASK_REGIONS[task]])

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
