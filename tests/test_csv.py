"""Kaggle's CSV MNIST everywhere: real MNIST rows written in Kaggle's train.csv / test.csv layouts,
read back exactly, trained on through --data (a directory or a file, plain or gzipped), predicted
with a submission file checked against the true labels; bad CSVs fail with row and column."""
from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
from fastmnist.cli import main
from fastmnist.data import MNISTError, load_dataset, load_mnist_csv

PIXELS = [f"pixel{i}" for i in range(784)]


def write_kaggle(path, x, y=None, header=True):
    """Kaggle's layout, written with the csv module: label,pixel0..pixel783 (test.csv: no label)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if header:
            w.writerow((["label"] if y is not None else []) + PIXELS)
        for i in range(len(x)):
            w.writerow(([int(y[i])] if y is not None else []) + x[i].reshape(-1).tolist())


def set_cell(path, line, col, value):
    """Replace (or with ``value`` None, delete) cell ``col`` of line ``line`` (0-based) of a CSV file."""
    lines = path.read_text().splitlines()
    cells = lines[line].split(",")
    if value is None:
        del cells[col]
    else:
        cells[col] = value
    lines[line] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def kaggle(mnist, tmp_path_factory):
    x_train, y_train, x_test, y_test = mnist
    d = tmp_path_factory.mktemp("kaggle")
    write_kaggle(d / "train.csv", x_train[:2000], y_train[:2000])
    write_kaggle(d / "test.csv", x_test[:300])
    return d, (x_train[:2000], y_train[:2000], x_test[:300], y_test[:300])


def test_kaggle_files_read_back_exactly(kaggle, tmp_path):
    d, (x, y, xt, _) = kaggle
    gx, gy = load_mnist_csv(d / "train.csv")
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    gx, gy = load_mnist_csv(d / "test.csv")
    assert gy is None
    np.testing.assert_array_equal(gx, xt)
    # gzipped, and without a header
    write_kaggle(tmp_path / "t.csv.gz", x[:50], y[:50], header=False)
    gx, gy = load_mnist_csv(tmp_path / "t.csv.gz")
    np.testing.assert_array_equal(gx, x[:50])
    np.testing.assert_array_equal(gy, y[:50])


def test_train_predict_submission_round_trip(kaggle, tmp_path, capsys):
    d, (_, _, _, yt) = kaggle
    out = tmp_path / "run"
    assert main(["train", "fnn", "--data", str(d), "--out", str(out), "--epochs", "2", "--quiet",
                 "--no-figures"]) == 0
    s = json.loads((out / "summary.json").read_text())
    data = s["settings"]["data"]
    assert data["format"] == "csv" and data["unlabelled_test"].endswith("test.csv")
    assert "held out" in data["test_source"]
    # 10 % of train.csv held out as the test set; the rest trained on
    assert (s["results"]["train_size"], s["results"]["test_size"]) == (1800, 200)
    sub = tmp_path / "submission.csv"
    capsys.readouterr()
    assert main(["predict", str(out / "model.npz"), str(d / "test.csv"), "--submission", str(sub),
                 "--quiet"]) == 0
    assert "300 predictions" in capsys.readouterr().out
    rows = list(csv.reader(sub.read_text().splitlines()))
    assert rows[0] == ["ImageId", "Label"]
    ids = [int(r[0]) for r in rows[1:]]
    labels = np.array([int(r[1]) for r in rows[1:]])
    assert ids == list(range(1, 301))
    assert np.mean(labels == yt) > 0.8  # checked against the true labels of those test images


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_data_can_be_one_csv_file(kaggle, tmp_path, suffix):
    _, (x, y, _, _) = kaggle
    f = tmp_path / f"kaggle_train{suffix}"
    write_kaggle(f, x[:600], y[:600])
    out = tmp_path / "run"
    assert main(["train", "mlp-scratch", "--data", str(f), "--out", str(out), "--epochs", "1", "--quiet",
                 "--no-figures"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["data"]["source"] == str(f)
    assert (s["results"]["train_size"], s["results"]["test_size"]) == (540, 60)
    xa, ya, xb, yb, _ = load_dataset(f, seed=0)
    # the held-out rows and the training rows are disjoint and together the whole file
    assert len(ya) + len(yb) == 600
    both = np.concatenate([xa.reshape(len(xa), -1), xb.reshape(len(xb), -1)])
    assert len(np.unique(both, axis=0)) == len(np.unique(x[:600].reshape(600, -1), axis=0))


@pytest.mark.parametrize("bad", ["nan", "inf", "5e0", "abc", "5.5", ""])
def test_bad_first_row_is_an_error_not_a_header(bad, tmp_path, mnist):
    # a first data row with a bad cell used to be taken for a header and silently dropped
    x, y = mnist[2][:3], mnist[3][:3]
    f = tmp_path / "m.csv"
    write_kaggle(f, x, y, header=False)
    set_cell(f, 0, 7, bad)
    with pytest.raises(MNISTError, match=rf"in row 1, column 8: '{bad}'"):
        load_mnist_csv(f)
    # the same bad cell under a Kaggle header: row 2 (the header is row 1), column named
    write_kaggle(f, x, y)
    set_cell(f, 1, 7, bad)
    with pytest.raises(MNISTError, match=rf"in row 2, column 8 \('pixel6'\): '{bad}'"):
        load_mnist_csv(f)


def test_bad_csvs_name_row_and_column(tmp_path, mnist, capsys):
    x, y = mnist[2][:4], mnist[3][:4]
    f = tmp_path / "train.csv"

    def corrupt(row, col, value):
        write_kaggle(f, x, y)
        set_cell(f, row, col, value)

    corrupt(3, 100, None)
    with pytest.raises(MNISTError, match="row 4 has 784 columns, expected 785"):
        load_mnist_csv(f)
    corrupt(2, 300, "256")
    with pytest.raises(MNISTError, match=r"pixel outside 0-255 in row 3, column 301 \('pixel299'\): '256'"):
        load_mnist_csv(f)
    corrupt(2, 300, "-1")
    with pytest.raises(MNISTError, match="pixel outside 0-255 in row 3, column 301"):
        load_mnist_csv(f)
    corrupt(4, 0, "10")
    with pytest.raises(MNISTError, match=r"label out of range 0-9 in row 5, column 1 \('label'\): '10'"):
        load_mnist_csv(f)
    # through the command line: one clean line naming the cell
    assert main(["train", "logreg", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "row 5, column 1" in err
    # a header with the wrong width
    f.write_text("label,a,b\n1,2,3\n")
    with pytest.raises(MNISTError, match="3 columns"):
        load_mnist_csv(f)


def test_header_of_column_numbers(tmp_path, mnist):
    # pandas writes integer column names: "label,0,1,...,783" is a header, not a data row
    x, y = mnist[2][:3], mnist[3][:3]
    f = tmp_path / "m.csv"
    write_kaggle(f, x, y, header=False)
    f.write_text("label," + ",".join(str(i) for i in range(784)) + "\n" + f.read_text())
    gx, gy = load_mnist_csv(f)
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
