"""tubeclient: Python clients for tubeserver and beanstalkd.

The sync and trio clients over one sans-IO codec arrive with the client issue; this package
exists now so that `pip install .` provides the `tubeclient` import name from the start.
"""

__version__ = "0.1.0"
