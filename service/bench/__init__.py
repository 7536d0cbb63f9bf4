"""``rivulet bench``: a load generator for Rivulet deployments (see :mod:`service.bench.run`)."""
