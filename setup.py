"""Install the top-level source folders under the ``spark`` import namespace.

``runtime/`` becomes ``spark.runtime``, ``actors/`` becomes ``spark.actors`` and so on,
so that nothing generic (``runtime``, ``config``) lands top-level in site-packages.
The package list is discovered here rather than listed in pyproject.toml so that a new
subpackage cannot be forgotten.
"""

from pathlib import Path

from setuptools import find_packages, setup

SOURCE_FOLDERS = (
    "runtime",
    "actors",
    "supervision",
    "config",
    "core",
    "exchange",
    "venue",
    "storage",
)

HERE = Path(__file__).parent
package_dir: dict[str, str] = {}
packages: list[str] = []
for folder in SOURCE_FOLDERS:
    package_dir[f"spark.{folder}"] = folder
    packages.append(f"spark.{folder}")
    packages.extend(f"spark.{folder}.{sub}" for sub in find_packages(where=str(HERE / folder)))

setup(
    package_dir=package_dir,
    packages=packages,
    package_data={"": ["*.ini", "*.mako", "*.toml", "*.service", "*.csv", "*.json", "py.typed"]},
)
