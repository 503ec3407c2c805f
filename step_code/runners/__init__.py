"""Model runners: one per way of calling a model; `factory.build_runner` picks the right one."""
