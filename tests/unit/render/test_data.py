"""The workbook's controls: the registry's, in control-id order, never found by name."""

from __future__ import annotations

from render.workbook import control_id_of, control_marts
from soxtrail.kernel.controls import COMPLETENESS, CONTROLS


def test_control_ids_come_from_mart_names() -> None:
    assert control_id_of("fct_control_ac01__privileged_access_approved") == "AC-01"
    assert control_id_of("fct_control_bk01__backups_performed") == "BK-01"
    assert control_id_of("fct_control_summary") is None
    assert control_id_of("dim_roles") is None


def test_every_registered_mart_maps_back_to_its_control() -> None:
    for control, model in CONTROLS.items():
        assert control_id_of(model) == control


def test_a_mart_that_only_looks_like_a_control_is_not_one() -> None:
    assert control_id_of("fct_control_zz99__not_registered") is None


def test_the_workbook_shows_every_registered_control_in_id_order() -> None:
    marts = control_marts()
    # the controls in id order, then the completeness marts (their sheets come after)
    assert marts == {**CONTROLS, **COMPLETENESS}
    assert list(marts) == [*sorted(CONTROLS), *COMPLETENESS]
