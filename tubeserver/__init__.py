"""tubeserver: a beanstalkd-compatible job server on trio."""

__version__ = "0.1.0"
