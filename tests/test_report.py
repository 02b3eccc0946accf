"""The HTML report: a results directory of small real results (a cube and masking of tiny models) and synthetic
analysis results in the contracted layout, written to disk; then the page, its files, its readings, its failure
modes, and the page in a real browser (headless Chromium)."""
from __future__ import annotations

import html.parser
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lrp_faces import report
from lrp_faces.report import FIGURES, ReportError, write_report

from test_plots import (KEEP_AOPC, masking_result, methods_result, regions_result, rsa_result, self_masking,
                        similarity_result, small_study)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHROMIUM = shutil.which("chromium")
KIND_WORDS = {"features": "penultimate features", "relevance": "relevance maps",
              "decision_weighted": "decision-weighted features"}


def write_netcdf(dataset: xr.Dataset, path: Path) -> None:
    """Strings as char arrays, as the study runner writes them (variable-length strings crash HDF5 here)."""
    encoding = {name: {"dtype": "S1"} for name, variable in dataset.variables.items() if variable.dtype.kind in "OU"}
    dataset.to_netcdf(path, engine="netcdf4", encoding=encoding)


def study_json(title="tiny study") -> dict:
    return {"title": title, "settings": {"dataset": {"kind": "synthetic", "identities": 4}, "image_size": 32,
                                         "attribution": {"method": "epsilon_gamma_box"}},
            "zoo": [{"spec": {"pretraining": "faces", "task": "gender", "seed": 0}, "checkpoint": "zoo/a.pt",
                     "accuracy": 0.75}],
            "human_source": "synthetic parameter-space distances (a stand-in for human ratings)"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(results directory with every file and its report, the small study: faces, cube, generalisation, ...)."""
    folder = tmp_path_factory.mktemp("results")
    study = small_study(folder)  # writes folder/cube
    write_netcdf(study["generalization"], folder / "masking.nc")
    write_netcdf(self_masking(study), folder / "masking_lerf.nc")
    write_netcdf(similarity_result(), folder / "similarity.nc")
    write_netcdf(regions_result(), folder / "regions.nc")
    write_netcdf(methods_result(), folder / "methods.nc")
    write_netcdf(rsa_result(), folder / "rsa.nc")
    (folder / "study.json").write_text(json.dumps(study_json()))
    write_report(folder, images=study["faces"])
    return folder, study


@pytest.fixture
def index(built) -> Path:
    """The report of the full results directory (read-only)."""
    return built[0] / "report" / "index.html"


@pytest.fixture
def results(built, tmp_path):
    """A private copy of the full results directory and its report (without the zoo), to modify."""
    target = tmp_path / "results"
    shutil.copytree(built[0], target, ignore=shutil.ignore_patterns("zoo", "ragged"))
    return target


class Links(html.parser.HTMLParser):
    """Every img src, a href and script tag of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.text = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


def parse(index: Path) -> Links:
    parser = Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def page_text(index: Path) -> str:
    return " ".join(" ".join(parse(index).text).split())


# --------------------------------------------------------------------------------------------------- contents
def test_report_shows_every_figure_and_links_existing_files_only(built, index):
    results = built[0]
    page = parse(index)
    assert sorted(Path(src).stem for src in page.images) == sorted(FIGURES)
    for reference in page.images + [link for link in page.links if not link.startswith("#")]:
        assert (index.parent / reference).exists(), reference
    assert sorted(link for link in page.links if link.endswith(".svg")) == sorted(f"figures/{name}.svg"
                                                                                for name in FIGURES)
    linked = {Path(os.path.normpath(index.parent / link)) for link in page.links}
    for name in ("masking.nc", "masking_lerf.nc", "similarity.nc", "regions.nc", "methods.nc", "rsa.nc", "cube",
                 "study.json"):
        assert results / name in linked
    assert page.scripts == 0
    source = index.read_text(encoding="utf-8")
    assert "http://" not in source and "https://" not in source and "src=\"//" not in source
    assert not [file for file in index.parent.rglob("*") if file.name.endswith(".tmp")]


def test_report_states_the_settings_and_the_zoo(index):
    text = page_text(index)
    assert "tiny study" in text and "kind synthetic" in text and "zoo/a.pt" in text
    assert "faces/gender/0" in text and "75.0%" in text  # the zoo's accuracy from study.json


def test_readings_are_computed_from_the_results(built, index):
    text = page_text(index)
    generalization = built[1]["generalization"]
    seed = generalization.sel(relation="same_cell_different_seed")
    mean, low, high = (float(seed[f"summary_generalization_index{suffix}"]) for suffix in ("", "_ci_low", "_ci_high"))
    separator = " to " if min(low, high) < 0 else "–"  # documented: a dash between positive bounds, else "to"
    expected = f"{mean:.2f} ({low:.2f}{separator}{high:.2f})".replace("-", "−")
    assert f"masking by another seed's map is {expected} as effective" in text
    # the 10 % most relevant pixels' share of positive relevance, by a naive loop over the maps
    cube = built[1]["cube"]
    shares = []
    for values in cube.relevance.values.reshape(-1, cube.sizes["y"] * cube.sizes["x"]):
        positive = sorted((value for value in values if value > 0), reverse=True)
        if positive:
            shares.append(sum(positive[:int(np.ceil(0.1 * len(values)))]) / sum(positive))
    assert f"the 10% most relevant pixels of a map hold {np.mean(shares):.0%} of its positive relevance" in text
    methods = methods_result()
    best = str(methods["mean"].sel(metric="relevance_mass_accuracy").idxmax().item()).replace("_", " ")
    assert f"By relevance mass accuracy the best method is {best}" in text


def test_the_masking_curves_add_the_models_lerf_curves_when_masking_lerf_is_there(built, index, results):
    generalization, study = built[1]["generalization"], built[1]
    lerf = self_masking(study)
    fraction = float(generalization.fraction.values[1])  # the first >= 10 %: 0.25
    least = float(lerf["correct"].sel(fraction=fraction).mean())
    text = page_text(index)
    assert f"against {least:.0%} when the {fraction:.0%} least relevant are hidden (LeRF) and " in text
    assert "No LeRF curves" not in text and "are not drawn" not in text
    (results / "masking_lerf.nc").unlink()
    text = page_text(write_report(results))
    assert "No LeRF curves: masking_lerf.nc is not in the results directory" in text
    assert "(LeRF)" not in text and "figures/masking_curves.png" in parse(results / "report" / "index.html").images
    write_netcdf(self_masking(study, fractions=(0.0, 0.5)), results / "masking_lerf.nc")  # from other settings
    text = page_text(write_report(results))
    assert "The LeRF curves of masking_lerf.nc are not drawn: lerf has the fractions [0.0, 0.5]" in text


@pytest.mark.parametrize("mode", ["remove", "keep"])
def test_the_curves_reading_says_whether_the_pixels_were_hidden_or_kept(mode):
    from lrp_faces.report.readings import curves_reading

    result = masking_result(mode)
    step = 1  # the first fraction >= 10 %
    own = np.mean([result["correct"].isel(source_seed=seed, target_seed=seed, fraction=step).mean()
                   for seed in range(len(result.source_seed))])
    random = float(result["random_correct"].isel(fraction=step).mean())
    unmasked = float(result["unmasked_accuracy"].mean())
    own_aopc = np.mean([float(result["aopc"].isel(source_seed=seed, target_seed=seed).squeeze())
                        for seed in range(len(result.source_seed))])
    text = curves_reading(result)
    if mode == "remove":
        assert text.startswith(f"Hiding the 10% most relevant pixels (MoRF) changes accuracy from {unmasked:.0%} to "
                               f"{own:.0%} on average over the 2 models, against {random:.0%} for a random 10%.")
        assert f"the explained output drops by {own_aopc:.2f} with the models' own maps" in text
        assert "kept" not in text
    else:
        assert text.startswith(f"Keeping only the 10% most relevant pixels (MoRF) and filling the rest gives an "
                               f"accuracy of {own:.0%} on average over the 2 models ({unmasked:.0%} unmasked), "
                               f"against {random:.0%} for a random 10%.")
        assert f"(the result does not state how it is defined) is {own_aopc:.2f} with the models' own maps" in text
        assert "hidden" not in text and "drops" not in text


def test_the_curves_reading_states_the_aopc_as_the_result_defines_it():
    from lrp_faces.report.readings import curves_reading

    assert f"The AOPC of the keep curves (defined as {KEEP_AOPC}) is " in curves_reading(
        masking_result("keep", aopc=KEEP_AOPC))
    definition = "mean over fractions > 0 of f(original) - f(masked)"
    assert f"with a random order (AOPC: {definition})." in curves_reading(masking_result("remove", aopc=definition))


def test_the_report_of_a_keep_run_says_the_pixels_were_kept(built, results):
    study = built[1]
    generalization = study["generalization"].assign_attrs(mode="keep", aopc=KEEP_AOPC)
    write_netcdf(generalization, results / "masking.nc")
    write_netcdf(self_masking(study).assign_attrs(mode="keep"), results / "masking_lerf.nc")
    index = write_report(results)
    text = page_text(index)
    fraction = float(generalization.fraction.values[1])
    assert f"Keeping only the {fraction:.0%} most relevant pixels (MoRF) and filling the rest" in text
    assert f"when the {fraction:.0%} least relevant are kept (LeRF)" in text
    assert f"The AOPC of the keep curves (defined as {KEEP_AOPC})" in text
    assert "are hidden" not in text and "Hiding the" not in text
    assert 'alt="masking curves: accuracy and output against the fraction of pixels kept (the rest filled)"' in \
        index.read_text(encoding="utf-8")


def test_the_map_reading_says_which_images_it_reads():
    from lrp_faces.report.readings import MAP_SAMPLE, grid_reading

    rng = np.random.default_rng(3)
    for count in (MAP_SAMPLE - 4, MAP_SAMPLE + 16):
        relevance = rng.normal(size=(1, 2, 1, count, 6, 6))
        cube = xr.Dataset({"relevance": (("pretraining", "task", "seed", "image", "y", "x"), relevance)},
                          coords={"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0],
                                  "image": [f"img{index}" for index in range(count)]})
        read = min(count, MAP_SAMPLE)
        shares = []
        for values in relevance[..., :read, :, :].reshape(-1, 36):
            positive = sorted((value for value in values if value > 0), reverse=True)
            shares.append(sum(positive[:4]) / sum(positive))
        which = f"{count} images" if count <= MAP_SAMPLE else f"the first {MAP_SAMPLE} of the {count} images"
        assert grid_reading(cube).startswith(f"Across 2 models and {which}, the 10% most relevant pixels of a map "
                                             f"hold {np.mean(shares):.0%} of its positive relevance")


def test_the_stand_in_for_human_ratings_is_flagged(index, results):
    text = page_text(index)
    assert "Not human data" in text
    assert "there is no noise ceiling: the human RDM has no individual raters" in text
    write_netcdf(rsa_result(human_source="ratings of 24 people", ceiling=(0.2, 0.3)), results / "rsa.nc")
    text = page_text(write_report(results))
    assert "Not human data" not in text and "noise ceiling, 0.20–0.30" in text


@pytest.mark.parametrize("lower", [0.2, 0.9])
def test_with_raters_the_report_compares_the_mean_rater_correlation_with_the_noise_ceiling(results, lower):
    result = rsa_result(human_source="ratings of 3 people", ceiling=(lower, lower + 0.1))
    write_netcdf(result, results / "rsa.nc")
    index = write_report(results)
    text = page_text(index)
    # the statistic the ceiling bounds, averaged over seeds; naive loops over the cells
    cells = {}
    for pretraining, task, kind in itertools.product(*(result[dim].values for dim in ("pretraining", "task",
                                                                                      "kind"))):
        cells[(str(pretraining), str(task), str(kind))] = float(np.mean(
            result.rater_correlation.sel(pretraining=pretraining, task=task, kind=kind).values))
    best = max(cells, key=cells.get)
    reaching = sum(value >= lower for value in cells.values())
    assert f"By the mean correlation with each rater's RDM (means over seeds), closest to the human RDM are the " \
           f"{KIND_WORDS[best[2]]} of {best[0]}/{best[1]} models, ρ = {cells[best]:.2f}".replace("-", "−") in text
    where = "reaches" if cells[best] >= lower else "stays below"
    assert f"which {where} the lower bound of the noise ceiling ({lower:.2f})" in text
    assert f"{reaching} of {len(cells)} model RDMs (pretraining × task × kind) reach the lower bound" in text
    assert ("reaches the noise ceiling's lower bound" in text) and "figures/rsa_bars.png" in parse(index).images
    assert text.count(" yes ") + text.count(" no ") >= len(cells)  # the table's column, one per cell
    # the main findings carry the same statistic and the ceiling
    start = text.index("Main findings")
    findings = text[start:text.index("Study settings", start)]
    assert f"which {where} the lower bound of the noise ceiling" in findings


def test_missing_results_are_skipped_with_a_note_and_their_old_figures_removed(results):
    for name in ("similarity.nc", "regions.nc", "methods.nc", "rsa.nc"):
        (results / name).unlink()
    shutil.rmtree(results / "cube")
    index = write_report(results)
    text = page_text(index)
    for name in ("cube", "similarity.nc", "regions.nc", "methods.nc", "rsa.nc"):
        assert f"Skipped: {name} is not in the results directory." in text
    page = parse(index)
    assert sorted(Path(src).stem for src in page.images) == ["asymmetry_heatmap", "generalization_by_relation",
                                                             "generalization_heatmap", "masking_curves"]
    assert sorted(path.stem for path in (index.parent / "figures").glob("*.png")) == sorted(
        Path(src).stem for src in page.images)


def test_an_unreadable_result_file_is_noted_and_the_rest_is_shown(results):
    (results / "methods.nc").write_bytes(b"not a netcdf file")
    index = write_report(results)
    text = page_text(index)
    assert "Skipped: methods.nc could not be read" in text
    assert "figures/rsa_bars.png" in parse(index).images


def test_text_from_the_results_is_escaped(results):
    (results / "study.json").write_text(json.dumps({**study_json("<script>alert(1)</script>"),
                                                    "settings": {"note": "a & b < c"}}))
    index = write_report(results)
    source = index.read_text(encoding="utf-8")
    assert "<script>" not in source and "&lt;script&gt;alert(1)&lt;/script&gt;" in source
    assert "a &amp; b &lt; c" in source


def test_a_report_can_be_written_elsewhere(results, tmp_path):
    shutil.rmtree(results / "report")
    index = write_report(results, out=tmp_path / "elsewhere", progress=True)
    assert index == tmp_path / "elsewhere" / "index.html"
    page = parse(index)
    assert all((index.parent / link).exists() for link in page.links if not link.startswith("#"))
    assert not (results / "report").exists()


def test_a_failed_write_leaves_the_previous_report(results, monkeypatch):
    index = results / "report" / "index.html"
    before = index.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report._page.plots, "masking_curves", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(results)
    assert index.read_bytes() == before
    assert not [file for file in index.parent.rglob("*") if file.name.endswith(".tmp")]


def test_a_failed_drawing_leaves_the_previous_figures_too(results, monkeypatch):
    def files() -> dict:  # a rewritten file is a new inode, even with the same bytes
        folder = results / "report" / "figures"
        return {path.name: (path.read_bytes(), path.stat().st_ino) for path in folder.iterdir()}

    figures = files()

    def broken(*args, **kwargs):
        raise RuntimeError("no memory")

    monkeypatch.setattr(report._page.plots, "rsa_bars", broken)  # the last figure of the page
    with pytest.raises(RuntimeError, match="no memory"):
        write_report(results)
    assert files() == figures


def test_a_page_that_cannot_be_renamed_into_place_leaves_the_previous_page(results, monkeypatch):
    index = results / "report" / "index.html"
    before = index.read_bytes()
    replace = os.replace

    def failing(source, target):
        if Path(target).name == "index.html":
            raise OSError("disk full")
        replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        write_report(results)
    assert index.read_bytes() == before
    assert not [file for file in index.parent.rglob("*") if file.name.endswith(".tmp")]


def test_results_directories_that_cannot_be_read_are_named(tmp_path):
    with pytest.raises(ReportError, match=str(tmp_path / "nowhere")):
        write_report(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError, match="is a file"):
        write_report(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="holds no study results"):
        write_report(tmp_path / "empty")
    with pytest.raises(TypeError, match="results_dir must be a path"):
        write_report(3)


# ---------------------------------------------------------------------------------------------------- browser
HARNESS = """<script>
window.addEventListener("load", function () {
  var broken = [];
  for (var image of document.images) {
    if (!image.complete || image.naturalWidth === 0) broken.push(image.getAttribute("src"));
  }
  document.body.setAttribute("data-images", String(document.images.length));
  document.body.setAttribute("data-broken", broken.join(" "));
});
</script></body>"""


def render(index: Path, profile: Path, *arguments: str) -> str:
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--virtual-time-budget=10000", *arguments, index.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def loaded_images(index: Path, profile: Path) -> tuple[int, list[str]]:
    """Render a copy of the page with a probe script appended (the report itself has none): (images, broken)."""
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text(encoding="utf-8").replace("</body>", HARNESS), encoding="utf-8")
    dom = render(probe, profile, "--dump-dom")
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    count = int(body.split('data-images="')[1].split('"')[0])
    broken = body.split('data-broken="')[1].split('"')[0].split()
    return count, broken


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to check the report in a browser (Debian: apt-get install "
                                             "chromium; CI installs it in .ci/run)")
def test_the_report_loads_in_a_browser_with_every_image(results, tmp_path):
    from PIL import Image

    index = results / "report" / "index.html"
    count, broken = loaded_images(index, tmp_path / "profile")
    assert (count, broken) == (len(FIGURES), [])
    screenshot = tmp_path / "page.png"
    render(index, tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={screenshot}")
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # text, tables and figures, not a blank page
    (index.parent / "figures" / "rsa_bars.png").unlink()  # the probe notices a missing figure
    assert loaded_images(index, tmp_path / "profile") == (len(FIGURES), ["figures/rsa_bars.png"])


def test_settings_are_grouped_and_long_flat_tables_collapsed():
    from lrp_faces.report.tables import settings_html

    study = {"name": "s", "settings": {"name": "s", "zoo": {"demo": "quick", "demo_settings": {
        f"option_{index}": index for index in range(20)}}, "dataset": {"kind": "demo", "path": None}},
        "versions": {"torch": "2"}}
    text = settings_html(study)
    assert text.count('<div class="card">') == 3  # study, zoo, dataset
    assert text.count("<td>s</td>") == 1  # the name given twice is shown once
    assert "<summary>demo_settings (20 values)</summary>" in text and "<summary>versions (1 value)</summary>" in text
    assert "path" not in text  # unset values are left out


def test_settings_show_floats_without_float_noise():
    from lrp_faces.report.tables import settings_html

    study = {"settings": {"masking": {"fractions": [0.0, 0.05, 0.15000000000000002], "road_noise": 0.01,
                                      "blur_sigma": 2.0}, "dataset": {"kind": "synthetic", "nuisance": 1.0,
                                                                      "identities": 4}}}
    text = settings_html(study)
    assert "[0.0, 0.05, 0.15]" in text and "0.15000000000000002" not in text
    assert "<td>2.0</td>" in text and "<td>1.0</td>" in text and "<td>0.01</td>" in text


DATASET = {"kind": None, "path": "faces.csv", "image_root": "images", "split": "test", "image_size": 64,
           "identities": 10, "images_per_identity": 8, "seed": 0, "nuisance": 1.0, "max_images": 40,
           "on_error": "raise", "check": "verify", "labels": {"gender": "identity"}}
"""Every setting of a study's [dataset], as DatasetSettings.to_dict() gives them."""
APPLIES = {"demo": set(), "synthetic": {"identities", "images_per_identity", "seed", "nuisance", "image_size", "split"},
           "manifest": {"path", "image_root", "on_error", "check", "image_size", "split"},
           "celeba": {"path", "split", "on_error", "check", "image_size"},
           "folders": {"path", "on_error", "check", "image_size", "split"}}
"""The settings that apply to some kinds of data set only (the demo's images, and their size, are the demo zoo's);
kind, max_images and labels apply to all."""


@pytest.mark.parametrize("kind", sorted(APPLIES))
def test_the_dataset_settings_shown_are_those_of_its_kind(kind):
    from lrp_faces.report.tables import settings_html

    text = settings_html({"settings": {"dataset": {**DATASET, "kind": kind}}})
    shown = set(re.findall(r"<tr><td>([^<]*)</td>", text.replace("<wbr>", "")))
    assert shown == {"kind", "max_images", "labels.gender"} | APPLIES[kind]


def test_dataset_settings_of_a_trimmed_record_are_shown_as_they_are():
    from lrp_faces.report.tables import dataset_settings

    trimmed = {"kind": "manifest", "path": "faces.csv", "max_images": None}
    assert dataset_settings(trimmed) == trimmed
    assert dataset_settings({"identities": 3}) == {"identities": 3}  # no kind: nothing to filter by


def test_a_single_seed_without_a_ci_shows_no_fake_interval():
    from lrp_faces.report.readings import rsa_cells, rsa_reading
    from lrp_faces.report.tables import ground_truth_table, rsa_table
    result = rsa_result(seeds=(0,))  # n_bootstrap=0: NaN intervals
    for name in ("ci_low", "ci_high"):
        result[name][:] = np.nan
    _, mean, lower, upper = rsa_cells(result)
    assert np.isfinite(mean).all() and np.isnan(lower).all() and np.isnan(upper).all()
    for text in (rsa_reading(result), rsa_table(result)):
        assert "0.00–0.00" not in text
        assert not re.search(r"\d\.\d\d \(−?\d", text)  # no value is followed by an interval
    regions = regions_result(seeds=(0,))
    for side in ("low", "high"):
        regions[f"relevance_mass_accuracy_ci_{side}"][:] = np.nan
    rows = re.findall(r'<tr><td>[^<]*</td><td>[^<]*</td><td class="num">([^<]*)</td><td class="num">([^<]*)</td>',
                      ground_truth_table(regions))
    assert len(rows) == 4
    assert all(re.fullmatch(r"\d\.\d\d", mass) for mass, _ in rows)  # the mass accuracy: no interval
    assert all(re.fullmatch(r"\d\.\d\d \(\d\.\d\d–\d\.\d\d\)", rank) for _, rank in rows)


def test_intervals_over_seeds_use_the_results_confidence():
    from lrp_faces.report.readings import rsa_cells
    from lrp_faces.result_layout import mean_interval
    result = rsa_result()
    result.attrs["confidence"] = 0.5
    values, mean, lower, upper = rsa_cells(result)
    expected = mean_interval(values, 2, 0.5)
    np.testing.assert_allclose(lower, expected[1])
    np.testing.assert_allclose(upper, expected[2])
