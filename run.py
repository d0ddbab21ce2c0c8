"""lorabench entry point: `python run.py [group=option ...] [key=value ...]` (Hydra)."""
import hydra

import lorabench.config  # noqa: F401  registers the typed schema and the run/sweep directory resolvers


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg):
    from lorabench import quiet

    quiet.install()   # before lorabench.run's imports: bitsandbytes logs its kernel advice when first imported
    from lorabench.run import main as run_main

    return run_main(cfg)


if __name__ == "__main__":
    main()
