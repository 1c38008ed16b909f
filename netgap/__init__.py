"""The netgap lab toolkit: run, observe and break the two tiers. The tiers never import it."""
