"""`make bench`: stashly side by side with hand-written redis-py code and the peers, on one private Redis.

Not a test: nothing here asserts on timings. ``python bench/run.py --help`` for the options.
"""
