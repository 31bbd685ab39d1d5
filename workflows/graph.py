"""Pure DAG helpers over ``needs``: topological order, upstream sets, cycles, dependents.

A graph is a mapping from each step id to the ids it needs (edges point upstream), in
definition order. Ids in a ``needs`` list that are not keys of the mapping are ignored: the
validator reports them, and the interpreter only sees validated definitions. Every algorithm
here is iterative, so a 5,000-step chain never meets Python's recursion limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence

Needs = Mapping[str, Sequence[str]]
"""Step id -> the step ids it needs."""


class CycleError(ValueError):
    """The graph has a cycle, so it has no topological order."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(f"cycle: {format_cycle(cycle)}")
        self.cycle = cycle


def format_cycle(cycle: Sequence[str]) -> str:
    """Format a cycle as ``a -> b -> c -> a`` (each step needs the next)."""
    return " -> ".join([*cycle, cycle[0]])


def dependents(needs: Needs) -> dict[str, list[str]]:
    """The steps that directly need each step, in definition order.

    Args:
        needs: Step id -> the step ids it needs.

    Returns:
        Step id -> the step ids whose ``needs`` name it (every key of ``needs`` is present).
    """
    out: dict[str, list[str]] = {step: [] for step in needs}
    for step, upstream in needs.items():
        for need in upstream:
            if need in out:
                out[need].append(step)
    return out


def sortable(needs: Needs) -> list[str]:
    """The steps that are on no cycle and need no step on one, in topological order.

    Kahn's algorithm; ties are broken by definition order, so the result is deterministic.

    Args:
        needs: Step id -> the step ids it needs.

    Returns:
        Every step whose transitive needs are acyclic, each after all of its needs.
    """
    waiting = {step: sum(1 for n in upstream if n in needs) for step, upstream in needs.items()}
    below = dependents(needs)
    ready = deque(step for step, count in waiting.items() if count == 0)
    order: list[str] = []
    while ready:
        step = ready.popleft()
        order.append(step)
        for dependent in below[step]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    return order


def topological_order(needs: Needs) -> list[str]:
    """Every step after all of its needs (ties in definition order).

    Args:
        needs: Step id -> the step ids it needs.

    Returns:
        The step ids in an order in which they can run one by one.

    Raises:
        CycleError: If the steps' needs form a cycle (the error names one).
    """
    order = sortable(needs)
    if len(order) < len(needs):
        raise CycleError(find_cycles(needs)[0])
    return order


def find_cycle(needs: Needs) -> list[str] | None:
    """One cycle of the graph, or None when it is acyclic (see :func:`find_cycles`)."""
    cycles = find_cycles(needs)
    return cycles[0] if cycles else None


def find_cycles(needs: Needs) -> list[list[str]]:
    """One cycle per strongly connected component that has one, in definition order.

    Args:
        needs: Step id -> the step ids it needs.

    Returns:
        Cycles as lists of step ids where each needs the next and the last needs the first,
        each starting at its earliest step in definition order. A step that needs itself is
        a cycle of one.
    """
    done = set(sortable(needs))
    if len(done) == len(needs):
        return []
    rest = {
        step: [n for n in upstream if n in needs and n not in done]
        for step, upstream in needs.items()
        if step not in done
    }
    position = {step: i for i, step in enumerate(needs)}
    cycles = []
    for component in _components(rest):
        members = set(component)
        if len(component) > 1 or component[0] in rest[component[0]]:
            start = min(component, key=position.__getitem__)
            cycles.append(_cycle_within(rest, members, start, position))
    return sorted(cycles, key=lambda cycle: position[cycle[0]])


def _cycle_within(
    needs: Mapping[str, list[str]], members: set[str], start: str, position: Mapping[str, int]
) -> list[str]:
    """Follow needs inside one strongly connected component until a step repeats."""
    path: list[str] = []
    seen: dict[str, int] = {}
    step = start
    while step not in seen:
        seen[step] = len(path)
        path.append(step)
        step = next(n for n in needs[step] if n in members)
    cycle = path[seen[step] :]
    first = cycle.index(min(cycle, key=position.__getitem__))
    return cycle[first:] + cycle[:first]


def _components(needs: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative); needs must be keys."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(step: str) -> tuple[str, Iterator[str]]:
        index[step] = low[step] = len(index)
        stack.append(step)
        on_stack.add(step)
        return step, iter(needs[step])

    for root in needs:
        if root in index:
            continue
        work = [visit(root)]
        while work:
            step, edges = work[-1]
            for need in edges:
                if need not in index:
                    work.append(visit(need))
                    break
                if need in on_stack:
                    low[step] = min(low[step], index[need])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[step])
                if low[step] == index[step]:
                    components.append(_pop_component(stack, on_stack, step))
    return components


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> list[str]:
    component: list[str] = []
    while True:
        step = stack.pop()
        on_stack.discard(step)
        component.append(step)
        if step == root:
            return component


class Upstream:
    """Every step's transitive needs, held as int bitsets (bit i is the i-th step)."""

    def __init__(self, ids: Sequence[str], bits: Mapping[str, int]) -> None:
        self.ids = tuple(ids)
        self.index = {step: i for i, step in enumerate(self.ids)}
        self._bits = dict(bits)

    def includes(self, step: str, other: str) -> bool:
        """Whether ``step`` (transitively) needs ``other``; False for unknown ids."""
        position = self.index.get(other)
        return position is not None and bool(self._bits.get(step, 0) >> position & 1)

    def of(self, step: str) -> list[str]:
        """The steps that ``step`` (transitively) needs, in definition order."""
        bits = self._bits[step]
        out = []
        while bits:
            low = bits & -bits
            out.append(self.ids[low.bit_length() - 1])
            bits ^= low
        return out


def upstream_sets(needs: Needs) -> Upstream:
    """Compute every step's transitive needs in one pass over strongly connected components.

    Components come out of Tarjan's algorithm upstream first, so each is computed from
    finished ones. Any graph works: the steps of a cycle each count every step of the cycle,
    themselves included, as needed (which lets the validator keep checking references there).

    Args:
        needs: Step id -> the step ids it needs.

    Returns:
        The upstream sets, as bitsets over the steps in definition order.
    """
    position = {step: i for i, step in enumerate(needs)}
    edges = {step: [n for n in upstream if n in position] for step, upstream in needs.items()}
    bits: dict[str, int] = {}
    for component in _components(edges):
        members = set(component)
        acc = 0
        for step in component:
            for need in edges[step]:
                if need not in members:
                    acc |= bits[need] | (1 << position[need])
        if len(component) > 1 or component[0] in edges[component[0]]:
            for step in component:
                acc |= 1 << position[step]
        for step in component:
            bits[step] = acc
    return Upstream(list(needs), bits)
