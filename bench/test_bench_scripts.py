"""Unit tests of the bench scripts' parsing and arithmetic (CTest: bench.scripts). No timing: the
inputs are written here."""
import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data_parallel  # noqa: E402
import overhead  # noqa: E402
import report  # noqa: E402
import versus  # noqa: E402


def gbench(*entries):
    return {"context": {}, "benchmarks": list(entries)}


def aggregate(name, value, unit="us", aggregate_name="median"):
    return {"name": f"{name}_{aggregate_name}", "run_name": name, "run_type": "aggregate",
            "aggregate_name": aggregate_name, "real_time": value, "time_unit": unit}


def iteration(name, value, unit="us"):
    return {"name": name, "run_name": name, "run_type": "iteration", "real_time": value, "time_unit": unit}


class DataParallel(unittest.TestCase):
    def test_samples_per_s_is_the_epochs_images_over_its_median_epoch_after_the_first(self):
        output = "[trainer] [info] device cpu, 2 torch threads, 400 training / 20 validation images, 13 steps per epoch"
        self.assertEqual(data_parallel.samples_per_s(output, [9.0, 4.0, 5.0, 4.0]), 100.0)

    def test_the_row_is_the_median_pair_ratio_of_epoch_times(self):
        row = data_parallel.summarize([((4.0, 100.0), (3.0, 133.0)), ((5.0, 80.0), (2.5, 160.0)), ((4.0, 100.0), (4.0, 100.0))])
        self.assertEqual(row["name"], "data_parallel_demo")
        self.assertEqual(row["ratio"], 0.75)
        self.assertEqual((row["with_s"], row["without_s"]), (3.0, 4.0))
        self.assertIn("1 rank 100.0 samples/s, 2 ranks 133.0", row["note"])

    def test_a_run_without_the_images_line_is_an_error(self):
        with self.assertRaises(ValueError):
            data_parallel.samples_per_s("no such line", [1.0])


class BenchmarkTimes(unittest.TestCase):
    def test_median_aggregate_wins_over_mean_and_iterations(self):
        times = report.benchmark_times(gbench(aggregate("BM_A", 100, aggregate_name="mean"), aggregate("BM_A", 90),
                                              aggregate("BM_A", 5, aggregate_name="stddev")))
        self.assertAlmostEqual(times["BM_A"], 90e-6)

    def test_iterations_without_repetitions_are_averaged_and_units_converted(self):
        times = report.benchmark_times(gbench(iteration("BM_B", 2, "ms"), iteration("BM_B", 4, "ms"),
                                              iteration("BM_C", 700, "ns")))
        self.assertAlmostEqual(times["BM_B"], 3e-3)
        self.assertAlmostEqual(times["BM_C"], 700e-9)

    def test_settings_appended_to_names_are_dropped(self):
        times = report.benchmark_times(gbench(aggregate("BM_Restart/0/1/real_time", 20, "ms"),
                                              iteration("BM_Runner_NotifyHook_CallerCost/iterations:20000/real_time", 7)))
        self.assertEqual(sorted(times), ["BM_Restart/0/1", "BM_Runner_NotifyHook_CallerCost"])

    def test_a_failed_benchmark_is_left_out(self):
        failed = dict(iteration("BM_D", 1), error_occurred=True, error_message="a call faulted")
        self.assertEqual(report.benchmark_times(gbench(failed)), {})


class Rows(unittest.TestCase):
    def rows(self, data):
        return {row["row"]: row for row in report.build_rows(data)}

    def test_ratio_to_the_floor_and_targets(self):
        rows = self.rows({"runner": {"BM_Floor_RawZmqRoundTrip": 100e-6, "BM_Runner_CallHook_Cpp": 120e-6,
                                     "BM_Runner_TransformCaption_Cpp": 140e-6, "BM_Runner_NotifyHook_CallerCost": 7e-6},
                          "jail": {"BM_Restart/0/0": 10e-3, "BM_Restart/0/1": 20e-3},
                          "overhead": {"overhead_gpu": (0.26, 0.10, None, None)}})
        self.assertAlmostEqual(rows["BM_Runner_CallHook_Cpp"]["ratio"], 1.2)
        self.assertTrue(rows["BM_Runner_CallHook_Cpp"]["met"])
        self.assertFalse(rows["BM_Runner_TransformCaption_Cpp"]["met"], "1.4 > 1.3")
        self.assertFalse(rows["BM_Runner_NotifyHook_CallerCost"]["met"], "7 us > 5 us: a time target")
        self.assertAlmostEqual(rows["BM_Restart/0/1"]["ratio"], 2.0)
        self.assertTrue(rows["BM_Restart/0/1"]["met"], "20 ms < 200 ms")
        self.assertAlmostEqual(rows["overhead_gpu"]["ratio"], 2.6)
        self.assertFalse(rows["overhead_gpu"]["met"])
        self.assertEqual(rows["BM_Floor_RawZmqRoundTrip"]["ratio"], 1.0)

    def test_missing_rows_are_not_run_and_judge_nothing(self):
        rows = self.rows({"runner": {"BM_Runner_CallHook_Cpp": 120e-6}})
        self.assertIsNone(rows["BM_Runner_CallHook_Cpp"]["ratio"], "no floor in this run: no ratio")
        self.assertIsNone(rows["BM_Runner_CallHook_Cpp"]["met"])
        self.assertIsNone(rows["overhead_cpu"]["time_s"])
        self.assertIn("| not run |", report.table(list(rows.values()), report.machine()))

    def test_a_new_image_size_finds_its_own_floor_and_target(self):
        rows = self.rows({"runner": {"BM_Floor_RawZmqRoundTrip_Image/2048": 400e-6,
                                     "BM_Runner_TransformImage_CppPassThrough/2048": 500e-6,
                                     "BM_Runner_Throughput_Pool4": 50e-6, "BM_Floor_RawZmqRoundTrip": 100e-6}})
        image = rows["BM_Runner_TransformImage_CppPassThrough/2048"]
        self.assertEqual(image["floor"], "BM_Floor_RawZmqRoundTrip_Image/2048")
        self.assertAlmostEqual(image["ratio"], 1.25)
        self.assertTrue(image["met"])
        self.assertEqual(rows["BM_Runner_Throughput_Pool4"]["floor"], "BM_Floor_RawZmqRoundTrip")
        self.assertIsNone(rows["BM_Runner_Throughput_Pool4"]["met"], "no target named")
        self.assertEqual(rows["BM_Floor_RawZmqRoundTrip_Image/2048"]["floor"], "(itself)")

    def test_earlier_image_names_read_as_todays(self):
        times = report.benchmark_times(gbench(aggregate("BM_Floor_RawZmqRoundTrip_Image256/real_time", 100),
                                              aggregate("BM_Runner_TransformImage256_PythonPassThrough/real_time", 140),
                                              aggregate("BM_Runner_TransformImage_NodePassThrough/512/real_time", 9)))
        self.assertEqual(sorted(times), ["BM_Floor_RawZmqRoundTrip_Image/256", "BM_Runner_TransformImage_NodePassThrough/512",
                                         "BM_Runner_TransformImage_PythonPassThrough/256"])
        rows = self.rows({"runner": times})
        self.assertAlmostEqual(rows["BM_Runner_TransformImage_PythonPassThrough/256"]["ratio"], 1.4)
        self.assertTrue(rows["BM_Runner_TransformImage_PythonPassThrough/256"]["met"])

    def test_a_bigger_pool_is_compared_with_a_pool_of_one(self):
        rows = self.rows({"runner": {"BM_Pool_ColorGrade_4Loaders/1": 40e-3, "BM_Pool_ColorGrade_4Loaders/4": 20e-3}})
        self.assertAlmostEqual(rows["BM_Pool_ColorGrade_4Loaders/4"]["ratio"], 0.5)

    def test_every_floor_named_in_rows_is_a_row_of_the_same_source(self):
        names = {(source, row) for source, row, *_ in report.ROWS}
        for source, row, _, floor, _ in report.ROWS:
            if floor and source not in report.PAIRED:
                self.assertIn((source, floor), names, row)

    def test_a_batch_row_is_per_caption_against_one_caption_a_message(self):
        times = report.per_item({"BM_Runner_TransformCaptions_Python/32": 256e-6,
                                 "BM_Runner_TransformCaptions_Python/1": 90e-6, "BM_Runner_CallHook_Cpp": 80e-6})
        self.assertAlmostEqual(times["BM_Runner_TransformCaptions_Python/32"], 8e-6)
        self.assertAlmostEqual(times["BM_Runner_TransformCaptions_Python/1"], 90e-6)
        self.assertAlmostEqual(times["BM_Runner_CallHook_Cpp"], 80e-6, msg="not a batch row: untouched")
        rows = self.rows({"runner": times})
        batched = rows["BM_Runner_TransformCaptions_Python/32"]
        self.assertAlmostEqual(batched["ratio"], 8 / 90)
        self.assertTrue(batched["met"], "8 us a caption <= 10 us")
        self.assertIsNone(rows["BM_Runner_TransformCaptions_Node/32"]["met"], "not run")

    def test_versus_and_the_two_gpu_paces_are_rows(self):
        rows = self.rows({"overhead": {"overhead_gpu2": (0.105, 0.1, 1.05, None)},
                          "versus": {"versus_demo": (6.0, 8.0, 0.75, "114.0 against 85.0 samples/s, older d1a9e9c")}})
        self.assertFalse(rows["overhead_gpu2"]["met"], "1.05 > 1.03")
        self.assertAlmostEqual(rows["versus_demo"]["ratio"], 0.75)
        self.assertIn("114.0 against 85.0 samples/s", rows["versus_demo"]["what"])
        self.assertIsNone(rows["versus_demo"]["met"], "measured, no target")

    def test_load_reads_the_results_folder_and_writes_json(self):
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            (folder / "runner_bench.json").write_text(json.dumps(gbench(aggregate("BM_Floor_RawZmqRoundTrip", 70),
                                                                        aggregate("BM_Runner_CallHook_Cpp", 105))))
            (folder / "overhead.json").write_text(json.dumps({"rows": [{"name": "overhead_cpu", "with_s": 4.1,
                                                                        "without_s": 4.0, "ratio": 1.02}]}))
            out = folder / "table.json"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                self.assertEqual(report.main(["--dir", str(folder), "--json", str(out)]), 0)
            self.assertIn("| call hook on_epoch_start -> C++ | 105 µs | BM_Floor_RawZmqRoundTrip (70 µs) | 1.50 | ≤ 1.3× floor | **no** |",
                          printed.getvalue())
            written = {row["row"]: row for row in json.loads(out.read_text())["rows"]}
            self.assertAlmostEqual(written["BM_Runner_CallHook_Cpp"]["ratio"], 1.5)
            self.assertAlmostEqual(written["overhead_cpu"]["ratio"], 1.02, msg="the median of the pairs' ratios")
            self.assertTrue(written["overhead_cpu"]["met"])
            self.assertIsNone(written["BM_Start/0/1"]["time_s"], "no jail_bench.json: not run")


class Overhead(unittest.TestCase):
    def test_epoch_seconds_come_from_the_epoch_records_only(self):
        with tempfile.TemporaryDirectory() as run:
            lines = [{"step": 0, "epoch": 0, "loss": 1.0}, {"step": 14, "epoch": 0, "val_loss": 1.0},
                     {"step": 14, "epoch": 0, "epoch_s": 0.5}, {"step": 28, "epoch": 1, "epoch_s": 0.25}]
            (Path(run) / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
            self.assertEqual(overhead.epoch_seconds(run), [0.5, 0.25])

    def test_the_first_epoch_is_warm_up(self):
        self.assertEqual(overhead.run_time([9.0, 1.0, 3.0, 2.0]), 2.0)
        self.assertEqual(overhead.run_time([9.0]), 9.0)
        with self.assertRaises(ValueError):
            overhead.run_time([])

    def test_a_row_is_the_median_of_paired_ratios(self):
        row = overhead.summarize([(1.1, 1.0), (2.0, 1.0), (1.0, 1.0)])
        self.assertAlmostEqual(row["ratio"], 1.1)
        self.assertEqual(row["without_s"], 1.0)
        self.assertEqual(len(row["pair_ratios"]), 3)


class Versus(unittest.TestCase):
    def test_samples_per_s_is_the_trainers_last_word(self):
        output = ("[trainer] [info] epoch 3/3  step 44/44  loss 0.1  99.0 samples/s\n"
                  "[trainer] [info] done after 132 steps (81.5 samples/s); checkpoint /tmp/run/checkpoints/last\n")
        self.assertEqual(versus.samples_per_s(output), 81.5)
        with self.assertRaises(ValueError):
            versus.samples_per_s("exited before its first step\n")


if __name__ == "__main__":
    unittest.main()
