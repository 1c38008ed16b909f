from tierkit.main import run_tier
from webtier.app import create_app
from webtier.settings import Settings

run_tier("webtier", Settings.from_env, create_app)
