from apitier.app import create_app
from apitier.settings import Settings
from tierkit.main import run_tier

# The callee's end of the edge from the web tier: the responses' retransmissions are counted
# here, where they are sent (netgap.breakdown reads both ends).
run_tier("apitier", Settings.from_env, create_app, testify=True)
