from apitier.app import create_app
from apitier.settings import Settings
from tierkit.main import run_tier

run_tier("apitier", Settings.from_env, create_app)
