from .config import PhasesBenchConfig
def run(cfg, output_dir): raise NotImplementedError
