"""Stand-ins for the lapsed-customer journeys, under their workflow type names: the sweep
starts journeys by name and needs none of their code."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.types import JourneyExit, LapsedInput, OccasionInput


@workflow.defn(name="ReactivationWorkflow")
class StandInReactivation:
    """Runs until told to stop, like a journey waiting for its next e-mail."""

    def __init__(self) -> None:
        self.exited = False

    @workflow.run
    async def run(self, input: LapsedInput) -> str:
        await workflow.wait_condition(lambda: self.exited)
        return input.segment

    @workflow.signal
    def exit(self, _: JourneyExit) -> None:
        self.exited = True


@workflow.defn(name="WinBackWorkflow")
class StandInWinBack:
    @workflow.run
    async def run(self, input: LapsedInput) -> str:
        return input.segment


@workflow.defn(name="BirthdayWorkflow")
class StandInBirthday:
    @workflow.run
    async def run(self, input: OccasionInput) -> str:
        return input.day
