"""The netgap lab toolkit: run, observe and break the two tiers. The tiers never import it.

lab         the lab's line-up: collector, API tier, fault proxy and web tier as child processes,
            started in order, pinned apart and stopped in reverse (`netgap demo`, `netgap
            scenario`, the bench and the tests' harness start them through it)
supervisor  one child process: started, ready, pinned, measured (CPU seconds, RSS), stopped
"""
