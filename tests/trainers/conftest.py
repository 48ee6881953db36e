from nip_core.testing.synthetic.fixtures import synthetic_scenario  # noqa: F401
