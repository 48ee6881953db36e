"""PNG plots of one run and comparisons of groups; episode pictures."""

from __future__ import annotations

import json
import math

import pytest
from analysis_helpers import training_records, write_run

from nip_core import hookimpl
from nip_core.analysis.plots import (
    _draw_group,
    _panel_series,
    write_comparison_plots,
    write_run_plots,
)
from nip_core.analysis.report import (
    build_report,
    group_runs,
    load_run,
    metric_families,
    write_episode_pictures,
)
from nip_core.records import EpisodeRendererSpec
from nip_core.runs.run_dir import RunDirectory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T_975_DF2 = 4.302652729911275


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def full_run(root, run_id="run", seed=1, protocol="nip", accuracy_shift=0.0):
    records = training_records(
        [0.5 + accuracy_shift, 0.6 + accuracy_shift, 0.7 + accuracy_shift],
        rewards={"prover": [0.1, 0.2, 0.3], "verifier": [-0.1, 0.0, 0.1]},
        lengths=[4.0, 3.5, 3.0],
        test_accuracy=0.65 + accuracy_shift,
    )
    records.append({"step": 3, "prover.message_regression_test_accuracy": 0.9})
    return write_run(
        root,
        run_id,
        records,
        {"scenario": "toy", "interaction_protocol": protocol, "seed": seed},
    )


def test_run_plots_are_written_into_the_run_directory(tmp_path):
    path = full_run(tmp_path)
    written = write_run_plots(path)
    names = sorted(p.name for p in written)
    assert names == [
        "accuracy.png",
        "episode_length.png",
        "message_regression.png",
        "rewards.png",
    ]
    for file in written:
        assert file.parent == path / "plots"
        width, height = png_size(file)
        assert width > 300 and height > 200
    # a RunDirectory works too, and an explicit destination
    again = write_run_plots(RunDirectory(path), tmp_path / "elsewhere")
    assert sorted(p.name for p in again) == names
    assert all(p.parent == tmp_path / "elsewhere" for p in again)


def test_run_plots_draw_what_exists(tmp_path):
    only_accuracy = write_run(tmp_path, "a", [{"step": 0, "mean_accuracy": 0.5}])
    assert [p.name for p in write_run_plots(only_accuracy)] == ["accuracy.png"]
    solo = write_run(
        tmp_path,
        "solo",
        [
            {"step": 0, "verifier.train_accuracy": 0.6, "verifier.train_loss": 0.7},
            {"step": 1, "verifier.test_accuracy": 0.62},
        ],
    )
    assert [p.name for p in write_run_plots(solo)] == ["accuracy.png"]
    # nothing logged yet, no metrics file, no directory: nothing drawn, no error
    timers_only = write_run(tmp_path, "t", [{"step": 0, "timing.fps": 10.0}])
    assert write_run_plots(timers_only) == []
    (timers_only / "metrics.jsonl").unlink()
    assert write_run_plots(timers_only) == []
    assert write_run_plots(tmp_path / "missing") == []
    assert not (tmp_path / "missing").exists()


def test_comparison_plots_one_figure_per_panel(tmp_path):
    runs = [
        load_run(full_run(tmp_path, f"{p}-{s}", seed=s, protocol=p))
        for p in ("nip", "debate")
        for s in (1, 2)
    ]
    groups = group_runs(runs)
    written = write_comparison_plots(groups, tmp_path / "cmp")
    assert sorted(p.name for p in written) == [
        "accuracy.png",
        "episode_length.png",
        "message_regression.png",
        "rewards.png",
    ]
    # rewards: one sub-plot per agent, so wider than the single-panel accuracy
    assert (
        png_size(tmp_path / "cmp" / "rewards.png")[0]
        > png_size(tmp_path / "cmp" / "accuracy.png")[0]
    )


def test_smoothing_draws_training_curves_as_trailing_means_and_tests_as_logged(
    tmp_path,
):
    run = load_run(full_run(tmp_path))
    found = _panel_series(run, "accuracy", metric_families(), smooth=2)
    name, training = found[("", False)]
    assert name == "mean_accuracy"
    assert [step for step, _ in training] == [0, 1, 2]
    assert [v for _, v in training] == pytest.approx([0.5, 0.55, 0.65])
    assert found[("", True)][1] == run.series["test_mean_accuracy"]
    unsmoothed = _panel_series(run, "accuracy", metric_families())
    assert [v for _, v in unsmoothed[("", False)][1]] == pytest.approx([0.5, 0.6, 0.7])
    # and through a report: the figures drawn, the tables not smoothed
    report = build_report(
        [run.path], out_dir=tmp_path / "smoothed", num_episodes=0, smooth=2
    )
    assert (tmp_path / "smoothed" / "accuracy.png").is_file()
    row = report.to_dict()["runs"][0]
    assert row["final"]["mean_accuracy"] == pytest.approx(0.7)


def test_group_curve_is_the_mean_with_a_t_band():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    series = [[(0, 1.0), (1, 0.0)], [(0, 2.0)], [(0, 3.0)]]
    _draw_group(ax, series, "#000000", "g", test=False, confidence=0.95)
    (line,) = ax.lines
    assert list(line.get_xdata()) == [0, 1]
    assert list(line.get_ydata()) == [2.0, 0.0]
    (band,) = ax.collections
    ys = sorted({round(float(y), 9) for y in band.get_paths()[0].vertices[:, 1]})
    half = T_975_DF2 / math.sqrt(3)
    # the band spans mean ± t * s / sqrt(n) at step 0; step 1 (one run) has none
    assert ys[0] == pytest.approx(2.0 - half) and ys[-1] == pytest.approx(2.0 + half)
    assert max(band.get_paths()[0].vertices[:, 0]) == 0.0


def test_single_point_test_metric_is_an_error_bar():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    _draw_group(
        ax, [[(3, 0.6)], [(3, 0.8)]], "#000000", None, test=True, confidence=0.95
    )
    (container,) = ax.containers
    data_line, _, (bars,) = container.lines
    assert list(data_line.get_ydata()) == [pytest.approx(0.7)]
    half = 12.706204736174704 * math.sqrt(0.02) / math.sqrt(2)
    (segment,) = bars.get_segments()
    assert segment[:, 1] == pytest.approx([0.7 - half, 0.7 + half])


# --------------------------------------------------------------------------------------
# Episode pictures


class RendererPlugin:
    def __init__(self, renderer):
        self.renderer = renderer

    @hookimpl
    def register_episode_renderers(self):
        return [EpisodeRendererSpec(scenario="toy", renderer=self.renderer)]


def write_rollouts(path, iterations=(1, 12), episodes=3):
    rollouts = path / "rollouts"
    rollouts.mkdir(exist_ok=True)
    for iteration in iterations:
        lines = [
            json.dumps(
                {
                    "iteration": iteration,
                    "env_index": i,
                    "num_steps": 1,
                    "steps": [{"round": 0, "y": [i % 2]}],
                }
            )
            for i in range(episodes)
        ]
        (rollouts / f"iter_{iteration:06d}.jsonl").write_text("\n".join(lines) + "\n")


def test_episode_pictures_of_the_latest_sample(tmp_path, register_plugin):
    drawn = []

    def renderer(episode, path):
        drawn.append((episode["iteration"], episode["env_index"]))
        path.write_bytes(PNG_SIGNATURE)

    register_plugin(RendererPlugin(renderer), name="renderer")
    path = full_run(tmp_path)
    write_rollouts(path)
    pictures, problems = write_episode_pictures(load_run(path), tmp_path / "out", 2)
    assert problems == []
    assert drawn == [(12, 0), (12, 1)]
    assert [p.name for p in pictures] == [
        "iter_000012_episode_0.png",
        "iter_000012_episode_1.png",
    ]
    assert all(p.parent == tmp_path / "out" / "episodes" / "run" for p in pictures)
    # through the report, with the number of episodes asked for
    report = build_report([path], out_dir=tmp_path / "rep", num_episodes=3)
    assert len([p for p in report.files if "episodes" in p.parts]) == 3


def test_no_renderer_or_no_samples_draws_nothing(tmp_path, register_plugin):
    path = full_run(tmp_path)
    write_rollouts(path)
    # the toy scenario has no renderer in a bare plugin manager
    assert write_episode_pictures(load_run(path), tmp_path / "out", 4) == ([], [])
    register_plugin(RendererPlugin(lambda e, p: p.write_bytes(b"x")), name="r")
    bare = full_run(tmp_path, "bare")
    assert write_episode_pictures(load_run(bare), tmp_path / "out", 4) == ([], [])
    assert write_episode_pictures(load_run(path), tmp_path / "out", 0) == ([], [])
    # asked for by name (nip report --episodes N): said why, run by run
    _, [said] = write_episode_pictures(load_run(bare), tmp_path / "out", 4, True)
    assert said.startswith("no episode pictures for run bare: it saved no rollout ")
    assert "run.rollout_sample_period" in said


def test_pictures_asked_for_of_a_scenario_without_a_renderer_are_said_missing(
    tmp_path,
):
    path = full_run(tmp_path)
    write_rollouts(path)
    _, [said] = write_episode_pictures(load_run(path), tmp_path / "out", 4, True)
    assert said == (
        "no episode pictures for run run: its scenario 'toy' has no episode "
        "renderer (a plugin registers one with register_episode_renderers)"
    )
    report = build_report(
        [path], out_dir=tmp_path / "rep", num_episodes=2, explain_episodes=True
    )
    assert report.warnings == [said]
    assert build_report([path], out_dir=tmp_path / "rep2").warnings == []


def test_a_failing_renderer_is_a_warning(tmp_path, register_plugin):
    def broken(episode, path):
        raise RuntimeError("cannot draw")

    register_plugin(RendererPlugin(broken), name="broken")
    path = full_run(tmp_path)
    write_rollouts(path)
    report = build_report([path], out_dir=tmp_path / "rep", num_episodes=2)
    (warning,) = report.warnings
    assert "cannot draw" in warning and "'toy'" in warning
    assert (tmp_path / "rep" / "accuracy.png").is_file()


def test_a_plugin_panel_draws_its_metrics_and_adds_its_columns(
    tmp_path, register_plugin
):
    from nip_core.records import ReportMetric, ReportPanelSpec

    class PanelPlugin:
        @hookimpl
        def register_report_panels(self):
            return [
                ReportPanelSpec(
                    name="selection",
                    title="Examples selected per agent",
                    ylabel="examples",
                    metrics=[
                        ReportMetric(
                            pattern=r"fine_tune\.(?P<agent>[^.]+)\.num_selected",
                            display="{agent} selected",
                        )
                    ],
                    order=5,  # between the core's accuracy (0) and rewards (10)
                )
            ]

    register_plugin(PanelPlugin(), name="panel-plugin")
    records = training_records(
        [0.5, 0.6], rewards={"verifier": [0.0, 0.2]}, test_accuracy=0.7
    )
    records[0]["fine_tune.verifier.num_selected"] = 3
    records[1]["fine_tune.verifier.num_selected"] = 5
    records[1]["fine_tune.prover.num_selected"] = 2
    records[1]["fine_tune.verifier.unrelated"] = 1
    path = write_run(tmp_path, "run", records)
    report = build_report([path], out_dir=tmp_path / "out", num_episodes=0)
    assert report.columns == [
        "mean_accuracy",
        "test_mean_accuracy",
        "fine_tune.prover.num_selected",
        "fine_tune.verifier.num_selected",
        "verifier.mean_episode_reward",
    ]
    assert (tmp_path / "out" / "selection.png").is_file()
    assert "verifier selected" in report.format_text()
    assert report.run_table()[0]["fine_tune.verifier.num_selected"] == 5


def test_confidence_bands_of_accuracies_stay_within_0_and_1():
    from nip_core.analysis.plots import _draw_group, interval_bounds

    lower, upper = interval_bounds([0.98, 0.02, 0.5], [0.1, 0.1, float("nan")], (0, 1))
    assert lower == pytest.approx([0.88, 0.0, 0.5])
    assert upper == pytest.approx([1.0, 0.12, 0.5])
    # unbounded quantities (rewards) keep the whole interval
    assert interval_bounds([0.98], [0.1])[1] == pytest.approx([1.08])

    class Axes:
        def __init__(self):
            self.calls = {}

        def plot(self, *args, **kwargs):
            self.calls["plot"] = args
            self.calls["plot_style"] = kwargs

        def fill_between(self, steps, low, high, **kwargs):
            self.calls["band"] = (list(low), list(high))

        def errorbar(self, steps, means, yerr, **kwargs):
            self.calls["errorbar"] = (list(means), yerr)

    # three runs near perfect accuracy: a t-interval would reach past 1
    series = [[(0, 0.9), (1, 1.0)], [(0, 0.7), (1, 0.95)], [(0, 1.0), (1, 1.0)]]
    ax = Axes()
    _draw_group(ax, series, "C0", "g", test=False, confidence=0.95, bounds=(0, 1))
    low, high = ax.calls["band"]
    assert all(0.0 <= v <= 1.0 for v in low + high)
    assert max(high) == 1.0
    # runs that tested once, at the end: markers with error bars
    ax = Axes()
    once = [[(2, 0.9)], [(2, 0.7)], [(2, 1.0)]]
    _draw_group(ax, once, "C0", "g", test=True, confidence=0.95, bounds=(0, 1))
    means, (below, above) = ax.calls["errorbar"]
    assert "plot" not in ax.calls
    assert all(m + a <= 1.0 + 1e-12 for m, a in zip(means, above, strict=True))
    assert all(m - b >= -1e-12 for m, b in zip(means, below, strict=True))
    # runs that tested during training (rl.test_period), however few tests: a
    # dashed curve with a marker per test, and its band
    for tests in (series, [[(0, 0.5), (50, 0.6), (100, 0.7)]] * 2):
        ax = Axes()
        _draw_group(ax, tests, "C0", "g", test=True, confidence=0.95, bounds=(0, 1))
        assert "errorbar" not in ax.calls
        assert ax.calls["plot_style"]["linestyle"] == "--"
        assert ax.calls["plot_style"]["marker"] == "o"
        assert "band" in ax.calls


def _timed(records, seconds_per_step):
    """``records`` with ``timing.elapsed_s`` as the run context logs it: each step's
    record at ``seconds_per_step`` times its step plus one."""
    return [
        {**record, "timing.elapsed_s": seconds_per_step * (record["step"] + 1)}
        for record in records
    ]


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save, by file name."""
    from nip_core.analysis import plots

    figures = {}
    save = plots._save

    def keep(figure, path):
        figures[path.name] = figure
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _line_x(ax, label):
    line = next(line for line in ax.get_lines() if line.get_label() == label)
    return [float(x) for x in line.get_xdata()]


def test_one_run_against_wall_clock_minutes(tmp_path, drawn):
    records = _timed(training_records([0.5, 0.6, 0.7], test_accuracy=0.65), 30.0)
    path = write_run(tmp_path, "timed", records)
    write_run_plots(path, tmp_path / "minutes", x_axis="minutes")
    ax = drawn["accuracy.png"].axes[0]
    assert ax.get_xlabel() == "minutes (wall clock)"
    # steps 0, 1, 2 at 30, 60, 90 s; the test at step 3, 120 s
    assert _line_x(ax, "verifier") == [0.5, 1.0, 1.5]
    assert _line_x(ax, "verifier test") == [2.0]
    write_run_plots(path, tmp_path / "steps")
    ax = drawn["accuracy.png"].axes[0]
    assert ax.get_xlabel() == "iteration"
    assert _line_x(ax, "verifier") == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="x_axis must be one of iteration, minutes"):
        write_run_plots(path, tmp_path / "bad", x_axis="seconds")


def test_groups_against_minutes_are_drawn_at_their_runs_mean_time(tmp_path, drawn):
    from nip_core.analysis.plots import mean_positions

    # only the steps every run reached
    assert mean_positions([{0: 1.0, 1: 3.0}, {0: 2.0}]) == {0: 1.5}
    fast = [
        write_run(
            tmp_path,
            f"fast-{seed}",
            _timed(training_records(accuracies), seconds),
            {"interaction_protocol": "nip", "seed": seed},
        )
        for seed, seconds, accuracies in (
            (1, 60.0, [0.5, 0.6, 0.65, 0.7]),
            (2, 120.0, [0.5, 0.6]),  # stopped early (or still running)
        )
    ]
    slow = write_run(
        tmp_path,
        "slow",
        _timed(training_records([0.5, 0.7]), 600.0),
        {"interaction_protocol": "debate", "seed": 1},
    )
    runs = [load_run(p) for p in (*fast, slow)]
    write_comparison_plots(group_runs(runs), tmp_path / "out", x_axis="minutes")
    ax = drawn["accuracy.png"].axes[0]
    assert ax.get_xlabel() == "minutes (wall clock)"
    # fast: the mean of 1 and 2 minutes at step 0, of 2 and 4 at step 1; the
    # steps only one run reached are not drawn (the mean would jump back in time)
    assert _line_x(ax, "interaction_protocol=nip (n=2)") == [1.5, 3.0]
    assert _line_x(ax, "interaction_protocol=debate (n=1)") == [10.0, 20.0]


def test_each_value_is_drawn_at_the_time_of_its_own_record(tmp_path, drawn):
    # a text trainer logs a step's statistics, its test and its fine-tune in
    # separate records, minutes apart
    records = [
        {"step": 0, "mean_accuracy": 0.5, "timing.elapsed_s": 60.0},
        {"step": 0, "test_mean_accuracy": 0.55, "timing.elapsed_s": 120.0},
        {"step": 0, "fine_tune.verifier.num_examples": 8, "timing.elapsed_s": 1800.0},
        {"step": 1, "mean_accuracy": 0.6, "timing.elapsed_s": 1860.0},
        {"step": 1, "test_mean_accuracy": 0.65, "timing.elapsed_s": 1920.0},
    ]
    path = write_run(tmp_path, "text", records)
    write_run_plots(path, tmp_path / "out", x_axis="minutes")
    ax = drawn["accuracy.png"].axes[0]
    assert _line_x(ax, "verifier") == [1.0, 31.0]
    assert _line_x(ax, "verifier test") == [2.0, 32.0]
    assert load_run(path).clock["mean_accuracy"] == {0: 60.0, 1: 1860.0}
    # the step's clock itself: its last record
    from nip_core.analysis.report import elapsed_minutes

    assert elapsed_minutes(load_run(path)) == {0: 30.0, 1: 32.0}


def test_a_run_timed_only_after_a_resume_is_not_drawn_against_minutes(tmp_path):
    from nip_core.analysis.report import ReportError, timed_from_the_start

    records = training_records([0.5, 0.6, 0.7, 0.8])
    for record in records[2:]:
        record["timing.elapsed_s"] = 30.0 * record["step"]
    path = write_run(tmp_path, "mixed", records)
    assert not timed_from_the_start(load_run(path))
    with pytest.raises(ReportError, match="mixed logged no timing.elapsed_s from"):
        build_report([path], out_dir=tmp_path / "out", x_axis="minutes")


def test_the_note_says_an_accuracy_band_is_drawn_within_its_bounds(
    tmp_path, monkeypatch
):
    """The table gives the interval; the band drawn stops at [0, 1]: the figure's
    note says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure
    from analysis_helpers import training_records, write_run

    from nip_core.analysis.report import build_report

    paths = [
        write_run(tmp_path, f"r{i}", training_records([a, a]))
        for i, a in enumerate((0.0, 0.9))
    ]
    texts = []
    original = matplotlib.figure.Figure.text

    def record(self, x, y, s, *args, **kwargs):
        texts.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "text", record)
    build_report(paths, out_dir=tmp_path / "out", num_episodes=0)
    note = "band: 95% t-interval over runs (drawn within [0, 1]); dashed/markers: test"
    assert note in texts


def test_iteration_axes_have_whole_ticks(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure
    from analysis_helpers import training_records, write_run

    from nip_core.analysis.report import build_report

    ticks = []
    original = matplotlib.figure.Figure.savefig

    def record(self, *args, **kwargs):
        for ax in self.axes:
            ticks.extend(ax.get_xticks())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    path = write_run(tmp_path, "r0", training_records([0.5, 0.6]))
    build_report([path], out_dir=tmp_path / "out", num_episodes=0)
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_fine_tune_examples_show_those_the_backend_left_out(tmp_path, drawn):
    records = [
        {"step": 0, "fine_tune.verifier.num_examples": 8},
        {"step": 1, "fine_tune.verifier.num_examples": 10},
        {
            "step": 1,
            "fine_tune.verifier.num_examples_left_out": 3,
            "fine_tune.verifier.train_loss": 0.5,
        },
    ]
    path = write_run(tmp_path, "text", records)
    write_run_plots(path, tmp_path / "out")
    given = drawn["fine_tune_examples.png"].axes[0]
    left_out = drawn["fine_tune_left_out.png"].axes[0]
    assert [list(line.get_ydata()) for line in given.get_lines()] == [[8, 10]]
    assert [list(line.get_ydata()) for line in left_out.get_lines()] == [[3]]
    assert [line.get_label() for line in left_out.get_lines()] == ["verifier"]


def test_a_crowded_figure_is_saved_without_a_layout_warning(tmp_path):
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nip_core.analysis.plots import _save

    figure = Figure(figsize=(1, 1))
    FigureCanvasAgg(figure)
    for ax in figure.subplots(2, 2).flat:
        ax.set_title("a very long title indeed " * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = _save(figure, tmp_path / "crowded.png")
    assert path.is_file()


def test_a_text_runs_renderer_gets_one_episode_of_its_rollouts(
    synthetic_text_scenario, register_plugin
):
    # the documented input in the text world: an episode as TextRollouts writes it
    from nip_core.experiment import run_experiment
    from nip_core.text.rollouts import TextRollouts

    class TextRendererPlugin:
        @hookimpl
        def register_episode_renderers(self):
            return [EpisodeRendererSpec(scenario="synthetic_text", renderer=draw)]

    drawn = []

    def draw(episode, path):
        drawn.append(TextRollouts.from_episode_dicts([episode]))
        path.write_bytes(PNG_SIGNATURE)

    register_plugin(TextRendererPlugin(), name="text_renderer")
    result = run_experiment(
        synthetic_text_scenario.hyper_params("nip"),
        synthetic_text_scenario.settings(),
        run_id="text",
    )
    pictures, problems = write_episode_pictures(
        load_run(result.run_dir), synthetic_text_scenario.root / "out", 2
    )
    assert problems == [] and len(pictures) == 2
    last = TextRollouts.load_jsonl(result.run_dir / "rollouts" / "iter_000001.jsonl")
    assert [rollouts.batch_size for rollouts in drawn] == [1, 1]
    assert drawn[0] == last.select([0])
    assert drawn[1] == last.select([1])


def test_long_panel_titles_are_wrapped_not_cut_off(tmp_path, monkeypatch):
    from nip_core.analysis import plots

    titles = {}
    save = plots._save

    def recording(figure, path):
        titles[path.name] = [ax.get_title() for ax in figure.axes] + [
            figure._suptitle.get_text() if figure._suptitle is not None else ""
        ]
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", recording)
    long = "Expert iteration: episodes selected by reward, per agent — 20261206-x"
    assert plots._wrapped(long) == (
        "Expert iteration: episodes selected by reward, per agent —\n20261206-x"
    )
    assert "\n" not in plots._wrapped(long, ncols=3)
    # every title drawn fits its width
    plots.write_run_plots(full_run(tmp_path, run_id="a-run-with-a-long-id-0123456789"))
    for name, drawn in titles.items():
        for title in drawn:
            assert all(len(line) <= 58 for line in title.splitlines()), (name, title)


def test_long_group_labels_are_wrapped_in_the_legend(tmp_path, monkeypatch):
    from nip_core.analysis import plots
    from nip_core.analysis.report import group_runs, load_run

    legends = {}
    save = plots._save

    def recording(figure, path):
        legends[path.name] = [
            text.get_text()
            for ax in figure.axes
            if ax.get_legend() is not None
            for text in ax.get_legend().get_texts()
        ]
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", recording)
    paths = [
        full_run(tmp_path, f"run-{i}", seed=i, protocol=protocol)
        for i, protocol in enumerate(["nip", "debate", "nip", "debate"])
    ]
    runs = [load_run(p) for p in paths]
    groups = group_runs(runs)
    long = "G1: scenario=code_validation, trainer=pure_text_ei, a=1, ... (+2 more)"
    object.__setattr__(groups[0], "short_label", long)
    plots.write_comparison_plots(groups, tmp_path / "out")
    entries = legends["accuracy.png"]
    assert any(entry.startswith("G1: scenario=code_validation,") for entry in entries)
    for entry in entries:
        assert all(len(line) <= 40 for line in entry.splitlines()), entry
