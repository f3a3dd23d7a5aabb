"""The whole stack (AirflowPlatform): the stack config and its parser (config.py, types.py,
environment.py, identity_config.py), the stack-wide guards (guards.py, deployed.py, stack_file.py),
the values that span capabilities (identity_values.py) and the component that composes them all
(component.py).
"""
