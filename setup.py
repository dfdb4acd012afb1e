from setuptools import find_packages, setup

# configs/ sits at the top of the checkout (where users look for it) and is installed inside the
# package as nas/configs, so that configs are addressable by name after a plain install.
setup(
    packages=find_packages(include=["nas", "nas.*"]) + ["nas.configs"],
    package_dir={"nas.configs": "configs"},
)
