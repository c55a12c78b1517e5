"""How class names become labels: the rules of signdb.data.labels, without a database."""

from __future__ import annotations

import pytest

from signdb.data.labels import read_class_names, resolve_classes
from signdb.errors import InputError, LabelError


def test_integer_names_are_their_own_labels() -> None:
    got = resolve_classes({"0", "1", "9"}, existing={})
    assert got.labels == {"0": 0, "1": 1, "9": 9}
    assert got.names == {0: "0", 1: "1", 9: "9"} and got.new == got.names


def test_word_names_get_labels_in_sorted_order_like_imagefolder() -> None:
    got = resolve_classes({"rocket", "astronaut", "cat", "coffee"}, existing={})
    assert got.labels == {"astronaut": 0, "cat": 1, "coffee": 2, "rocket": 3}


def test_a_mix_of_words_and_numbers_is_sorted_by_name() -> None:
    # Not every name is an integer, so none is taken as a label.
    assert resolve_classes({"10", "2", "dog"}, existing={}).labels == {"10": 0, "2": 1, "dog": 2}


def test_a_later_load_appends_new_names_and_keeps_existing_labels() -> None:
    existing = {"grass": 1, "brick": 0, "gravel": 2}
    got = resolve_classes({"sand", "brick", "asphalt"}, existing=existing)
    assert got.labels == {"asphalt": 3, "brick": 0, "sand": 4}
    assert got.new == {3: "asphalt", 4: "sand"}


def test_integer_labels_can_be_named() -> None:
    got = resolve_classes({"0", "2"}, existing={}, index_names=["zero", "one", "two"])
    assert got.labels == {"0": 0, "2": 2}
    assert got.names == {0: "zero", 2: "two"}


def test_too_few_names_for_the_labels() -> None:
    with pytest.raises(LabelError, match="label 5 but the class names cover labels 0 to 2"):
        resolve_classes({"0", "5"}, existing={}, index_names=["a", "b", "c"])


def test_names_for_classes_that_already_have_names_are_refused() -> None:
    with pytest.raises(LabelError, match="already names its classes.*'cat'.*drop --class-names"):
        resolve_classes({"cat", "dog"}, existing={}, index_names=["a", "b"])


def test_a_reload_cannot_rename_an_existing_label() -> None:
    existing = {"zero": 0, "one": 1}
    # An npy reload without --class-names calls label 0 "0": a rename, refused.
    with pytest.raises(LabelError, match="rename class 0 from 'zero' to '0'.*--class-names"):
        resolve_classes({"0", "1"}, existing=existing)
    # With the dataset's names, the same reload is fine and adds nothing.
    again = resolve_classes({"0", "1"}, existing=existing, index_names=["zero", "one"])
    assert again.new == {} and again.labels == {"0": 0, "1": 1}


def test_a_name_cannot_move_to_another_label() -> None:
    with pytest.raises(LabelError, match="gives class 'b' label 0.*has it as label 1"):
        resolve_classes({"0"}, existing={"a": 0, "b": 1}, index_names=["b"])


@pytest.mark.parametrize(
    "keys, existing",
    [({"Cat", "cat"}, {}), ({"CAT"}, {"cat": 0}), ({"Straße", "STRASSE"}, {})],
)
def test_names_that_differ_only_in_case_are_refused(keys, existing) -> None:
    with pytest.raises(LabelError, match="differ only in case"):
        resolve_classes(keys, existing=existing)


def test_class_names_file(tmp_path) -> None:
    good = tmp_path / "names.txt"
    good.write_text("zero\none\n two \n\n")
    assert read_class_names(good) == ["zero", "one", "two"]
    dup = tmp_path / "dup.txt"
    dup.write_text("a\nb\na\n")
    with pytest.raises(LabelError, match="'a' is on lines 1 and 3"):
        read_class_names(dup)
    hole = tmp_path / "hole.txt"
    hole.write_text("a\n\nc\n")
    with pytest.raises(LabelError, match="line 2: the class name is empty"):
        read_class_names(hole)
    with pytest.raises(InputError, match="no such file"):
        read_class_names(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(LabelError, match="is empty"):
        read_class_names(empty)
