"""Validation: one test per rule, each asserting the exact path and the gist of the message."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.definition import Definition
from workflows.graph import (
    CycleError,
    dependents,
    find_cycle,
    find_cycles,
    sortable,
    topological_order,
    upstream_sets,
)
from workflows.validation import Problem, ValidationResult, validate_definition

EXAMPLE = Path(__file__).parent / "data" / "definitions" / "order-fulfilment.yaml"


def step(uses: str = "transform", **fields: Any) -> dict[str, Any]:
    """A valid step; ``with_`` sets its inputs (a transform of 1 by default)."""
    inputs = fields.pop("with_", {"value": 1} if uses == "transform" else {})
    return {"uses": uses, "with": inputs, **fields}


def definition(**steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "steps": steps}


def problems(data: Any, known_kinds: set[str] | None = None) -> list[str]:
    result = validate_definition(data, known_kinds)
    assert result.definition is None
    assert result.problems
    return [str(p) for p in result.problems]


def assert_problem(data: Any, path: str, *gist: str, known_kinds: set[str] | None = None) -> None:
    """Some problem has exactly ``path`` and a message containing every ``gist``."""
    found = problems(data, known_kinds)
    prefix = f"{path}: "
    assert any(p.startswith(prefix) and all(g in p[len(prefix) :] for g in gist) for p in found), (
        found
    )


# --- a valid definition ---------------------------------------------------------------------------


def test_design_example_is_valid() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    result = validate_definition(data, known_kinds={"http"})
    assert result == ValidationResult(Definition.model_validate(data), [])
    assert result.ok


def test_problem_reads_path_colon_message() -> None:
    assert (
        str(Problem("steps.a.needs[0]", "no step named 'b'"))
        == "steps.a.needs[0]: no step named 'b'"
    )


def test_document_must_be_a_mapping() -> None:
    assert problems(["a"]) == ['definition: must be a mapping, got ["a"]']
    assert problems(None) == ["definition: must be a mapping, got nothing"]


def test_at_least_one_step() -> None:
    assert_problem({"name": "t", "steps": {}}, "definition", "at least one step")


# --- unknown fields -------------------------------------------------------------------------------


def test_unknown_top_level_field() -> None:
    data = {**definition(a=step()), "ouput": 1}
    assert problems(data) == ["definition: unknown field 'ouput' (did you mean 'output'?)"]


def test_unknown_step_field_suggests_close_match() -> None:
    data = definition(a=step(retires=3))
    assert problems(data) == ["steps.a: unknown field 'retires' (did you mean 'retry'?)"]


def test_unknown_field_without_close_match_has_no_suggestion() -> None:
    assert problems(definition(a=step(zzz=1))) == ["steps.a: unknown field 'zzz'"]


def test_unknown_field_in_defaults_retry() -> None:
    data = {**definition(a=step()), "defaults": {"retry": {"max_attempt": 2}}}
    assert_problem(data, "defaults.retry", "unknown field 'max_attempt'", "'max_attempts'")


def test_unknown_field_in_with_of_builtin_kind() -> None:
    data = definition(a=step("http", with_={"url": "https://x.example", "jsn": {}}))
    assert problems(data) == ["steps.a.with: unknown field 'jsn' (did you mean 'json'?)"]


def test_with_of_plugin_kind_is_free_form() -> None:
    data = definition(a=step("stripe_charge", with_={"anything": {"goes": 1}}))
    assert validate_definition(data, known_kinds={"stripe_charge"}).ok


def test_missing_required_input_of_builtin_kind() -> None:
    assert problems(definition(a=step("http"))) == ["steps.a.with: missing required field 'url'"]


def test_builtin_kind_rule_across_fields() -> None:
    data = definition(a=step("wait", with_={"duration": "1s", "event": "go"}))
    assert problems(data) == ["steps.a.with: give exactly one of duration, until or event"]


def test_unknown_field_in_fallback_mapping() -> None:
    data = definition(a=step(on_error={"fallbak": "b"}), b=step())
    found = problems(data)
    assert "steps.a.on_error: unknown field 'fallbak' (did you mean 'fallback'?)" in found
    assert "steps.a.on_error: missing required field 'fallback'" in found


# --- kinds and names ------------------------------------------------------------------------------


def test_unknown_kind_lists_the_known_ones() -> None:
    data = definition(a=step("htp"))
    assert_problem(
        data,
        "steps.a.uses",
        "unknown kind 'htp' (did you mean 'http'?)",
        "known kinds: http, stripe, transform, validate, wait, webhook, workflow",
        known_kinds={"http", "stripe"},
    )


def test_any_kind_is_accepted_without_known_kinds() -> None:
    assert validate_definition(definition(a=step("whatever"))).ok


def test_bad_definition_name_names_the_pattern() -> None:
    data = {**definition(a=step()), "name": "Order Fulfilment"}
    assert problems(data) == [
        "name: bad name 'Order Fulfilment': must match [a-z0-9][a-z0-9._-]{0,63}"
    ]


def test_bad_step_id_names_the_pattern() -> None:
    data = definition(**{"Fetch-1": step()})
    assert problems(data) == [
        "steps.Fetch-1: bad step id 'Fetch-1': must match [a-z_][a-z0-9_]{0,63}"
    ]


def test_bad_id_in_needs() -> None:
    data = definition(a=step(), b=step(needs=["A"]))
    assert problems(data) == ["steps.b.needs[0]: bad step id 'A': must match [a-z_][a-z0-9_]{0,63}"]


def test_literal_with_suggestion() -> None:
    data = {**definition(a=step()), "defaults": {"retry": {"backoff": "expo"}}}
    assert_problem(data, "defaults.retry.backoff", "expected one of 'exponential', 'linear'")


def test_union_value_of_no_member_says_what_was_expected() -> None:
    data = definition(a=step(on_error="retyr"))
    assert_problem(data, "steps.a.on_error", "one of 'fail', 'continue', 'skip' or 'manual'")
    assert_problem(data, "steps.a.on_error", "or a mapping, got 'retyr'")


def test_union_error_inside_the_intended_member() -> None:
    data = definition(a=step("http", with_={"url": "u", "ok_status": [200, "x"]}))
    assert problems(data) == ["steps.a.with.ok_status[1]: expected an integer, got 'x'"]


# --- needs and cycles -----------------------------------------------------------------------------


def test_needs_naming_no_step_suggests_a_close_one() -> None:
    data = definition(fetch=step(), charge=step(needs=["fech"]))
    assert problems(data) == ["steps.charge.needs[0]: no step named 'fech' (did you mean 'fetch'?)"]


def test_needs_naming_no_step_without_close_match() -> None:
    data = definition(fetch=step(), charge=step(needs=["zzz"]))
    assert problems(data) == ["steps.charge.needs[0]: no step named 'zzz'"]


def test_needs_as_a_single_string() -> None:
    assert validate_definition(definition(a=step(), b=step(needs="a"))).ok
    assert problems(definition(a=step(), b=step(needs="c"))) == [
        "steps.b.needs[0]: no step named 'c'"
    ]


def test_step_needing_itself() -> None:
    assert problems(definition(a=step(needs=["a"]))) == [
        "steps.a.needs[0]: a step cannot need itself"
    ]


def test_cycle_is_named() -> None:
    data = definition(a=step(needs=["c"]), b=step(needs=["a"]), c=step(needs=["b"]))
    assert problems(data) == ["steps.a.needs[0]: cycle: a -> c -> b -> a"]


def test_every_independent_cycle_is_reported() -> None:
    data = definition(
        a=step(needs=["b"]),
        b=step(needs=["a"]),
        x=step(),
        y=step(needs=["x", "z"]),
        z=step(needs=["y"]),
    )
    assert problems(data) == [
        "steps.a.needs[0]: cycle: a -> b -> a",
        "steps.y.needs[1]: cycle: y -> z -> y",
    ]


# --- fallbacks ------------------------------------------------------------------------------------


def test_fallback_to_missing_step() -> None:
    data = definition(charge=step(on_error={"fallback": "refnd"}), refund=step())
    assert problems(data) == [
        "steps.charge.on_error.fallback: no step named 'refnd' (did you mean 'refund'?)"
    ]


def test_fallback_to_itself() -> None:
    data = definition(a=step(on_error={"fallback": "a"}))
    assert problems(data) == ["steps.a.on_error.fallback: a step cannot fall back to itself"]


def test_fallback_loop() -> None:
    data = definition(a=step(on_error={"fallback": "b"}), b=step(on_error={"fallback": "a"}))
    assert problems(data) == ["steps.a.on_error.fallback: fallback loop: a -> b -> a"]


def test_fallback_that_needs_the_step_it_stands_in_for() -> None:
    data = definition(
        charge=step(on_error={"fallback": "refund"}),
        audit=step(needs=["charge"]),
        refund=step(needs=["audit"]),
    )
    assert problems(data) == [
        "steps.charge.on_error.fallback: fallback 'refund' needs 'charge', "
        "so it can never run in its place"
    ]


def test_default_fallback_to_missing_step_and_to_its_own_target() -> None:
    data = {
        **definition(a=step(), cleanup=step()),
        "defaults": {"on_error": {"fallback": "cleanup"}},
    }
    assert problems(data) == [
        "defaults.on_error.fallback: step 'cleanup' would fall back to itself "
        "(give it its own on_error)"
    ]
    data["defaults"]["on_error"]["fallback"] = "nope"
    assert problems(data) == ["defaults.on_error.fallback: no step named 'nope'"]


def test_fallback_steps_references_are_checked_like_any_step() -> None:
    data = definition(
        fetch=step(),
        charge=step(needs=["fetch"], on_error={"fallback": "refund"}),
        refund=step(with_={"value": "${{ steps.fetch.output }}"}),
    )
    assert problems(data) == [
        "steps.refund.with.value: refers to step 'fetch', which 'refund' does not need "
        "(add it to needs)"
    ]


# --- expressions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ({"with_": {"value": {"deep": ["${{ 1 + }}"]}}}, "steps.a.with.value.deep[0]"),
        ({"if": "${{ input.x == }}"}, "steps.a.if"),
        ({"if": "input.x =="}, "steps.a.if"),
        ({"for_each": "${{ [1, }}"}, "steps.a.for_each"),
        ({"with_": {"value": "${{ input.x"}}, "steps.a.with.value"),
    ],
)
def test_expression_that_does_not_compile(field: dict[str, Any], path: str) -> None:
    found = problems(definition(a=step(**field)))
    assert len(found) == 1
    assert found[0].startswith(f"{path}: ")
    assert "does not compile" in found[0] or "no closing '}}'" in found[0]


def test_output_expression_that_does_not_compile() -> None:
    data = {**definition(a=step()), "output": {"x": "${{ steps.a.output + }}"}}
    assert_problem(data, "output.x", "does not compile")


def test_unknown_function_does_not_compile() -> None:
    data = definition(a=step(with_={"value": "${{ input.name.lowerAsci() }}"}))
    assert_problem(data, "steps.a.with.value", "does not compile", "unknown function lowerAsci()")
    data = definition(a=step(**{"if": "${{ today() > 1 }}"}))
    assert_problem(data, "steps.a.if", "unknown function today()")


def test_extension_and_namespaced_functions_are_known() -> None:
    value = "${{ math.greatest([1, input.n]) + size(input.s.lowerAscii().split(',')) }}"
    assert validate_definition(definition(a=step(with_={"value": value}))).ok


def test_unknown_top_level_name() -> None:
    data = definition(a=step(with_={"value": "${{ inptu.x }}"}))
    assert problems(data) == [
        "steps.a.with.value: unknown name 'inptu' (did you mean 'input'?); "
        "names in scope: input, run, steps"
    ]


def test_run_and_params_are_in_scope() -> None:
    value = "${{ run.id + params.x + input.y }}"
    data = definition(a=step(with_={"value": value}))
    data["params"] = {"x": {"type": "string"}}
    assert validate_definition(data).ok


def test_item_and_index_need_for_each() -> None:
    data = definition(a=step(with_={"value": "${{ item }}"}))
    assert problems(data) == [
        "steps.a.with.value: 'item' is defined only in the with of a for_each step"
    ]


def test_item_and_index_in_a_for_each_step() -> None:
    data = definition(a=step(for_each=[1, 2], with_={"value": "${{ [item, index] }}"}))
    assert validate_definition(data).ok


def test_item_is_not_defined_in_if() -> None:
    data = definition(a=step(for_each=[1], **{"if": "${{ index > 0 }}"}))
    assert problems(data) == [
        "steps.a.if: 'index' is not defined in if (it is decided once, for the whole step)"
    ]


def test_item_is_not_defined_in_for_each_itself() -> None:
    data = definition(a=step(for_each="${{ item }}"))
    assert problems(data) == ["steps.a.for_each: 'item' is not defined in for_each itself"]


def test_macro_variables_are_not_unknown_names() -> None:
    value = "${{ input.xs.map(x, x * 2).filter(y, y > 1) }}"
    assert validate_definition(definition(a=step(with_={"value": value}))).ok


def test_reference_to_a_step_that_does_not_exist() -> None:
    data = definition(fetch=step(), a=step(with_={"value": "${{ steps.fecth.output }}"}))
    assert problems(data) == [
        "steps.a.with.value: refers to step 'fecth', which does not exist (did you mean 'fetch'?)"
    ]


def test_reference_to_a_step_that_is_not_needed() -> None:
    data = definition(
        fetch=step(),
        reserve=step(needs=["fetch"]),
        charge=step(
            "http",
            needs=["fetch"],
            with_={"url": "u", "json": {"amount": "${{ steps.reserve.output.total }}"}},
        ),
    )
    assert problems(data) == [
        "steps.charge.with.json.amount: refers to step 'reserve', which 'charge' does not need "
        "(add it to needs)"
    ]


def test_transitive_needs_are_enough() -> None:
    condition = {"if": "${{ steps.a.output > 0 }}"}
    data = definition(a=step(), b=step(needs=["a"]), c=step(needs=["b"], **condition))
    assert validate_definition(data).ok


def test_status_of_upstream_steps_only() -> None:
    ok = definition(a=step(), b=step(needs=["a"], **{"if": "steps.a.status == 'failed'"}))
    assert validate_definition(ok).ok
    bad = definition(a=step(), b=step(**{"if": "${{ steps.a.status == 'failed' }}"}))
    assert problems(bad) == [
        "steps.b.if: refers to step 'a', which 'b' does not need (add it to needs)"
    ]


def test_a_step_cannot_read_its_own_output() -> None:
    data = definition(a=step(with_={"value": "${{ steps.a.output }}"}))
    assert_problem(data, "steps.a.with.value", "refers to its own step 'a'")


def test_a_step_has_only_output_and_status() -> None:
    data = definition(a=step(), b=step(needs=["a"], with_={"value": "${{ steps.a.outptu }}"}))
    assert_problem(data, "steps.b.with.value", "steps.a.outptu", "did you mean 'output'?")


def test_output_may_refer_to_any_step() -> None:
    data = {**definition(a=step(), b=step()), "output": "${{ [steps.a.output, steps.b.status] }}"}
    assert validate_definition(data).ok


def test_output_reference_to_missing_step_and_item() -> None:
    data = {**definition(a=step()), "output": "${{ steps.b.output + item }}"}
    assert problems(data) == [
        "output: 'item' is defined only in the with of a for_each step",
        "output: refers to step 'b', which does not exist",
    ]


# --- modifiers, durations and schemas -------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ({"timeout": "5x"}, "timeout"),
        ({"defaults": {"retry": {"initial_interval": "soon"}}}, "defaults.retry.initial_interval"),
        ({"steps": {"a": step(timeout="-1s")}}, "steps.a.timeout"),
        ({"steps": {"a": step("wait", with_={"duration": "1 hour"})}}, "steps.a.with.duration"),
    ],
)
def test_bad_duration(where: dict[str, Any], path: str) -> None:
    data = {**definition(a=step()), **where}
    assert_problem(data, path, "not a duration", "e.g. '30s'")


def test_non_positive_concurrency_and_max_parallel() -> None:
    data = {**definition(a=step(for_each=[1], concurrency=0)), "max_parallel": -1}
    assert problems(data) == [  # in document order: max_parallel comes after steps here
        "steps.a.concurrency: must be greater than 0, got 0",
        "max_parallel: must be greater than 0, got -1",
    ]


def test_concurrency_without_for_each() -> None:
    assert problems(definition(a=step(concurrency=2))) == [
        "steps.a.concurrency: applies only with for_each"
    ]


def test_execution_must_be_one_of_its_values() -> None:
    assert problems(definition(a=step("shout", execution="fast"))) == [
        "steps.a.execution: expected one of 'local', 'activity' or 'auto', got 'fast'"
    ]


@pytest.mark.parametrize(
    ("kind", "runs"),
    [("transform", "in the workflow"), ("wait", "in the workflow"), ("workflow", "a child run")],
)
def test_execution_on_a_kind_that_runs_no_activity(kind: str, runs: str) -> None:
    inputs = {"value": 1} if kind == "transform" else {"duration": "1s"}
    if kind == "workflow":
        inputs = {"definition": "child"}
    assert problems(definition(a=step(kind, execution="local", with_=inputs))) == [
        "steps.a.execution: applies only to steps that run an activity (http, webhook, "
        f"plugins); a {kind} step runs {runs}"
    ]


def test_local_with_a_task_queue_or_a_heartbeat_names_the_field() -> None:
    data = definition(
        a=step("shout", execution="local", task_queue="gpu"),
        b=step("shout", heartbeat_timeout="5s"),
        c=step("shout", execution="auto", task_queue="gpu"),
        d=step("shout", execution="activity", heartbeat_timeout="5s"),
    )
    data["defaults"] = {"execution": "local"}
    assert problems(data) == [
        "steps.a.execution: local cannot be combined with task_queue 'gpu' (a local activity "
        "runs in the run's own worker); use activity or auto",
        "defaults.execution: local cannot be combined with step 'b' with heartbeat_timeout '5s' "
        "(a local activity cannot heartbeat); give step 'b' execution: activity or auto",
    ]


def test_defaults_execution_applies_only_to_activity_steps() -> None:
    data = definition(a=step(), b=step("shout", needs=["a"]))
    data["defaults"] = {"execution": "local"}
    result = validate_definition(data)
    assert result.ok, result.problems
    assert result.definition is not None
    assert [result.definition.runs_local(s) for s in result.definition.steps.values()] == [
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("for_each", "gist"),
    [
        ("abc", "must be a list or a ${{ }} expression, got 'abc'"),
        ({"a": 1}, "expected a list or a string"),
        ("${{ 5 }}", "must yield a list, but yields 5"),
        ("items: ${{ input.items }}", "must be one ${{ }} expression that yields a list"),
    ],
)
def test_for_each_that_is_not_a_list(for_each: Any, gist: str) -> None:
    assert_problem(definition(a=step(for_each=for_each)), "steps.a.for_each", gist)


@pytest.mark.parametrize(
    ("condition", "gist"),
    [
        (5, "expected a boolean or a string, got 5"),
        ([True], "expected a boolean or a string"),
        ("${{ input.a }} and ${{ input.b }}", "must be one ${{ }} expression that yields a bool"),
        ("${{ 'yes' }}", "must yield a bool, but yields 'yes'"),
    ],
)
def test_if_must_be_a_bool_or_an_expression(condition: Any, gist: str) -> None:
    assert_problem(definition(a=step(**{"if": condition})), "steps.a.if", gist)


def test_if_may_be_bare_cel_or_a_bool() -> None:
    data = definition(a=step(**{"if": "input.go && size(input.xs) > 0"}), b=step(**{"if": False}))
    assert validate_definition(data).ok


def test_input_must_be_a_json_schema() -> None:
    data = {
        **definition(a=step()),
        "input": {"type": "object", "properties": {"n": {"type": "nmber"}}},
    }
    assert problems(data) == [
        "input.properties.n.type: 'nmber' is not valid under any of the given schemas"
    ]


def test_input_schema_of_an_older_dialect() -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}
    assert validate_definition({**definition(a=step()), "input": schema}).ok
    schema["$schema"] = "https://example.com/my-dialect"
    assert_problem(
        {**definition(a=step()), "input": schema}, "input.$schema", "unknown JSON Schema"
    )


def test_validate_step_schema_must_be_a_json_schema() -> None:
    data = definition(a=step("validate", with_={"value": 1, "schema": {"minimum": "zero"}}))
    assert problems(data) == ["steps.a.with.schema.minimum: 'zero' is not of type 'number'"]


# --- every problem at once ------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "name": "Bad Name",
        "timeout": "soon",
        "input": {"type": "objekt"},
        "steps": {
            "fetch": {"uses": "htp", "retires": 2},
            "charge": {
                "uses": "http",
                "needs": ["fech"],
                "with": {"url": "${{ steps.reserve.output }}", "json": "${{ inptu.x }}"},
            },
            "reserve": {"uses": "transform", "with": {"value": 1}, "concurrency": 3},
            "a": {"uses": "transform", "needs": ["b"], "with": {"value": 1}},
            "b": {"uses": "transform", "needs": ["a"], "with": {"value": 1}},
        },
        "output": "${{ steps.nope.output }}",
    }
    found = problems(data, known_kinds={"http"})
    assert found == [
        "name: bad name 'Bad Name': must match [a-z0-9][a-z0-9._-]{0,63}",
        "timeout: not a duration: 'soon' (use a number and a unit: ms, s, m, h or d, e.g. '30s')",
        "input.type: 'objekt' is not valid under any of the given schemas",
        "steps.fetch: unknown field 'retires' (did you mean 'retry'?)",
        "steps.fetch.uses: unknown kind 'htp' (did you mean 'http'?); known kinds: http, "
        "transform, validate, wait, webhook, workflow",
        "steps.charge.needs[0]: no step named 'fech' (did you mean 'fetch'?)",
        "steps.charge.with.url: refers to step 'reserve', which 'charge' does not need "
        "(add it to needs)",
        "steps.charge.with.json: unknown name 'inptu' (did you mean 'input'?); "
        "names in scope: input, run, steps",
        "steps.reserve.concurrency: applies only with for_each",
        "steps.a.needs[0]: cycle: a -> b -> a",
        "output: refers to step 'nope', which does not exist",
    ]


def test_a_step_that_fails_its_model_does_not_hide_other_problems() -> None:
    data = definition(
        broken=step(retry="often", needs=["fetch"]),
        fetch=step(),
        after=step(needs=["broken", "fetchh"], with_={"value": "${{ steps.broken.output }}"}),
    )
    assert problems(data) == [
        "steps.broken.retry: expected a mapping, got 'often'",
        "steps.after.needs[1]: no step named 'fetchh' (did you mean 'fetch'?)",
    ]


def test_expressions_on_a_cycle_are_still_checked() -> None:
    value = "${{ [steps.zz.output, steps.b.output, steps.c.output] }}"
    data = definition(a=step(needs=["b"], with_={"value": value}), b=step(needs=["a"]), c=step())
    assert problems(data) == [
        "steps.a.needs[0]: cycle: a -> b -> a",
        "steps.a.with.value: refers to step 'c', which 'a' does not need (add it to needs)",
        "steps.a.with.value: refers to step 'zz', which does not exist",
    ]


def test_a_5000_step_chain_validates_quickly_and_without_recursion() -> None:
    steps = {"s0": step()}
    for i in range(1, 5000):
        value = f"${{{{ steps.s{i - 1}.output + steps.s0.output }}}}"
        steps[f"s{i}"] = step(needs=[f"s{i - 1}"], with_={"value": value})
    start = time.perf_counter()
    result = validate_definition(definition(**steps))
    assert result.ok
    assert time.perf_counter() - start < 5


# --- graph helpers --------------------------------------------------------------------------------


def test_topological_order_breaks_ties_in_definition_order() -> None:
    needs = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": [], "e": []}
    assert topological_order(needs) == ["a", "e", "b", "c", "d"]


def test_topological_order_raises_with_the_cycle() -> None:
    with pytest.raises(CycleError, match=r"cycle: b -> c -> b") as caught:
        topological_order({"a": [], "b": ["c"], "c": ["b"], "d": ["c"]})
    assert caught.value.cycle == ["b", "c"]


def test_sortable_leaves_out_cycles_and_what_needs_them() -> None:
    assert sortable({"a": [], "b": ["c"], "c": ["b"], "d": ["c"], "e": ["a"]}) == ["a", "e"]


def test_find_cycle() -> None:
    assert find_cycle({"a": [], "b": ["a"]}) is None
    assert find_cycle({"a": ["a"]}) == ["a"]
    assert find_cycles({"x": ["y"], "y": ["x"], "p": ["q"], "q": ["r"], "r": ["p"]}) == [
        ["x", "y"],
        ["p", "q", "r"],
    ]


def test_upstream_sets_and_dependents() -> None:
    needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}
    upstream = upstream_sets(needs)
    assert upstream.of("d") == ["a", "b", "c"]
    assert upstream.includes("d", "a")
    assert not upstream.includes("c", "b")
    assert not upstream.includes("d", "unknown")
    assert dependents(needs) == {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": []}


def test_upstream_sets_on_a_cycle() -> None:
    upstream = upstream_sets({"a": [], "b": ["a", "c"], "c": ["b"], "d": ["c"]})
    assert upstream.of("b") == ["a", "b", "c"]
    assert upstream.of("d") == ["a", "b", "c"]
    assert upstream.of("a") == []


def test_graph_helpers_handle_a_long_chain_iteratively() -> None:
    needs = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(20_000)}
    assert topological_order(needs)[-1] == "s19999"
    assert upstream_sets(needs).includes("s19999", "s0")
    needs["s0"] = ["s19999"]
    cycle = find_cycle(needs)
    assert cycle is not None and len(cycle) == 20_000


def test_params_are_in_scope_only_in_templates() -> None:
    plain = {
        "name": "plain",
        "steps": {"a": {"uses": "transform", "with": {"value": "${{ params.region }}"}}},
    }
    result = validate_definition(plain)
    assert [str(p) for p in result.problems] == [
        "steps.a.with.value: unknown name 'params'; names in scope: input, run, steps"
    ]
    template = {**plain, "params": {"region": {"type": "string", "default": "eu"}}}
    assert validate_definition(template).ok
