"""tubebench: tubeserver next to beanstalkd, same workloads, alternating rounds, ratios.

Installed as `tubebench` (the directory is bench/); `python -m bench` works from a checkout.
"""
