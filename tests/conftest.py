pytest_plugins = ["nip_core.testing.synthetic.fixtures"]
