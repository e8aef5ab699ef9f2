"""benchmarks.compile_bench: where the eager and compiled engines' answers part is reported."""

from benchmarks.compile_bench import first_difference


def test_first_difference_names_the_first_token_that_differs():
    assert first_difference([5, 6, 7], [5, 6, 7]) is None
    assert first_difference([5, 6, 7], [5, 9, 7]) == 1
    assert first_difference([5, 6, 7], [4, 6, 7]) == 0


def test_a_shorter_answer_differs_where_it_ends():
    assert first_difference([5, 6], [5, 6, 7]) == 2
    assert first_difference([5, 6, 7], [5]) == 1
