"""`python -m meterseal.dissemination …`: the router's commands without the whole CLI.

What a trusted router or aggregator runs, so that its process imports only what its
measurement covers (`trust.measurement.STAGE_ENTRIES`); `meterseal router …` is the same
app inside the full CLI, plus the operator's consent tools (`cli_consent`).
"""

from meterseal.dissemination.cli import dissemination_app

dissemination_app(prog_name="meterseal router")
