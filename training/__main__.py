"""`python -m training ...` and `torchrun --nproc_per_node N -m training ...` run the train command."""

import sys

from curation.catalog.errors import GhostsError
from training.command import train


def main() -> None:
    try:
        train.main(standalone_mode=False)
    except GhostsError as e:
        print(f"ghosts: error: {e}", file=sys.stderr)
        sys.exit(1)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
