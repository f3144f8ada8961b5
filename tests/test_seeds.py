"""Fine-tunes repeated with seeds: one recipe per checkpoint folder."""
import pytest

from mmtokenprune.analysis.seeds import summarise_seeds


def _row(setting, score):
    return dict(setting=setting, score=score)


def test_seeds_of_one_recipe_are_summarised_against_the_control():
    rows = [
        _row('baseline', 25.0),
        _row('ckpt=w/ft_control/iter_500.pth', 26.0),
        _row('ATME:keep_ratio=0.6+ckpt=w/ft_atme/iter_500.pth', 25.0),
        _row('ckpt=w/ft_control_seed1/iter_500.pth', 27.0),
        _row('ATME:keep_ratio=0.6+ckpt=w/ft_atme_seed1/iter_500.pth', 24.0),
        _row('ATME:keep_ratio=0.6+ckpt=w/ft_atme_seed2/iter_500.pth', 23.0),
        _row('ToMe:keep_ratio=0.6+ckpt=w/ft_tome/iter_500.pth', ''),
    ]
    table = summarise_seeds(rows, control='ft_control/')
    assert [r['recipe'] for r in table] == [
        'baseline', 'ckpt=w/ft_control/iter_500.pth',
        'ATME:keep_ratio=0.6+ckpt=w/ft_atme/iter_500.pth']
    atme = table[2]
    assert atme['seeds'] == {0: 25.0, 1: 24.0, 2: 23.0}
    assert atme['mean'] == pytest.approx(24.0)
    assert atme['spread'] == pytest.approx(2.0)
    assert atme['std'] == pytest.approx(1.0)
    assert atme['delta'] == pytest.approx(24.0 - 26.5)
    assert table[0]['std'] == 0. and table[0]['delta'] == pytest.approx(-1.5)


def test_the_control_must_name_one_recipe():
    with pytest.raises(ValueError, match='names 0 recipes'):
        summarise_seeds([_row('baseline', 1.0)], control='nope')
