"""`python -m meterseal.services run NAME …`: one service, without importing the whole CLI.

The supervisor starts services this way so that a trusted stage's process imports only what
its measurement covers (the full `meterseal` CLI would pull in every command's modules).
"""

from meterseal.services.cli import service_app

service_app(prog_name="meterseal service")
