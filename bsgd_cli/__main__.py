"""python -m bsgd_cli"""

from .cli import main

main()
