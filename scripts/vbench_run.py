"""Runs inside VBench's own environment (scripts/vbench_env.sh): one VBench dimension over a folder
of videos, through VBench's Python API, for analysis/vbench_eval.py (paper Table 2).

VBench's CLI always starts NCCL and fails without a GPU; its API does not, so the same call runs on
the CPU and on GPUs. Under torchrun (analysis/vbench_eval.py starts it so when there are several GPUs)
VBench's own group splits the videos over them. Every failure is one line naming the fix: a video
VBench cannot read (checked before it starts: VBench would skip it without a word), frames too small
for RAFT (dynamic_degree), or a model it cannot download (each dimension but temporal_flickering
downloads one on first use).

    .venv-vbench/bin/python scripts/vbench_run.py --videos V --full_info suite.json \\
        --dimension temporal_flickering --out results          # writes results/<dimension>_eval_results.json
"""
import argparse
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infra import cli, disk  # noqa: E402
from infra.cli import UserError  # noqa: E402

# What each dimension downloads on first use (VBench 0.1.5's utils.init_submodules and the dimension
# files), into $VBENCH_CACHE_DIR (default ~/.cache/vbench), ~/.cache/torch/hub or ~/.cache/clip.
DOWNLOADS = {
    "subject_consistency": "DINO ViT-B/16 (torch.hub, from GitHub)",
    "background_consistency": "CLIP ViT-B/32",
    "temporal_flickering": None,
    "motion_smoothness": "AMT-S (frame interpolation)",
    "dynamic_degree": "RAFT (raft-things optical flow)",
    "aesthetic_quality": "CLIP ViT-L/14 and the LAION aesthetic predictor",
    "imaging_quality": "MUSIQ (SPAQ)",
    "object_class": "GRiT (dense captioning / detection)",
    "multiple_objects": "GRiT (dense captioning / detection)",
    "human_action": "UMT-L/16 (Kinetics-400)",
    "color": "GRiT (dense captioning / detection)",
    "spatial_relationship": "GRiT (dense captioning / detection)",
    "scene": "Tag2Text (Swin-B) and bert-base-uncased",
    "appearance_style": "CLIP ViT-B/32",
    "temporal_style": "ViCLIP (InternVid-10M) and CLIP's BPE vocabulary",
    "overall_consistency": "ViCLIP (InternVid-10M) and CLIP's BPE vocabulary",
}


def too_small(dimension, height, width):
    """Why `dimension` cannot score frames of this size, or None. RAFT (dynamic_degree) pads frames to
    a multiple of 8 and pools its 1/8-resolution correlation volume 3 times: 57 px a side at least."""
    if dimension == "dynamic_degree" and min(math.ceil(height / 8), math.ceil(width / 8)) < 8:
        return (f"VBench's dynamic_degree (RAFT optical flow) needs frames of at least 57 px a side, these are "
                f"{height}x{width}; fix: evaluate a model that makes larger videos (the toy and tiny models "
                "have no dynamic degree, so no Quality Score)")
    return None


def check_videos(paths, dimension):
    """Read every video as VBench will (decord); the first one that cannot be read, or that is too
    small for `dimension`, is one line."""
    from decord import VideoReader
    for path in paths:
        try:
            reader = VideoReader(path, num_threads=1)
            n, (height, width, _) = len(reader), reader[0].shape
        except (RuntimeError, OSError) as e:          # decord raises DECORDError, a RuntimeError
            raise UserError(f"VBench cannot read video {path} ({str(e).splitlines()[0][:120]}); fix: delete it "
                            "and rerun analysis/vbench_eval.py, which writes the missing videos again") from None
        if n < 2:
            raise UserError(f"video {path} has {n} frame(s), VBench needs at least 2; fix: delete it and "
                            "rerun analysis/vbench_eval.py with a model that makes videos of several frames")
        if too_small(dimension, height, width):
            raise UserError(too_small(dimension, height, width))


def download_failure(dimension, error):
    """The one line for a model VBench could not download."""
    cache = os.environ.get("VBENCH_CACHE_DIR", "~/.cache/vbench")
    first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    return (f"VBench's {dimension} needs {DOWNLOADS[dimension]}, downloaded on first use, and the download "
            f"failed ({type(error).__name__}: {first}); fix: run this dimension once on a machine with "
            f"internet, then copy {cache}, ~/.cache/torch/hub and ~/.cache/clip here (VBENCH_CACHE_DIR moves "
            "the first)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="One VBench dimension over a folder of videos (VBench's Python API).",
                                allow_abbrev=False)
    p.add_argument("--videos", required=True, help="folder of `{prompt}-{i}.mp4` videos")
    p.add_argument("--full_info", "--full-info", required=True,
                   help="the prompt suite to read (VBench_full_info.json or a part of it)")
    p.add_argument("--dimension", required=True, choices=sorted(DOWNLOADS), help="the VBench dimension")
    p.add_argument("--out", required=True, help="folder for <dimension>_eval_results.json")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    from vbench import VBench
    from vbench.distributed import dist_init, get_rank
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist_init()                                   # NCCL, one GPU a process, as VBench's CLI
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    suite = disk.read_json(args.full_info, "pass the suite.json that analysis/vbench_eval.py wrote")
    names = set(os.listdir(args.videos))
    if get_rank() == 0:
        check_videos([os.path.join(args.videos, n) for n in sorted(names) if n.endswith(".mp4")], args.dimension)
    if not any(name.startswith(f"{e['prompt_en']}-") for e in suite if args.dimension in e["dimension"]
               for name in names):
        raise UserError(f"no video in {args.videos} for {args.dimension}'s prompts; fix: generate them "
                        "with analysis/vbench_eval.py (its --dimensions)")
    bench = VBench(device, args.full_info, args.out)
    try:
        bench.evaluate(videos_path=args.videos, name=args.dimension, dimension_list=[args.dimension],
                       mode="vbench_standard")
    except (OSError, subprocess.CalledProcessError) as e:   # a failed download: no connection, HTTP error
        if DOWNLOADS[args.dimension] is None:                # or the file it should have left behind
            raise
        raise UserError(download_failure(args.dimension, e)) from None


if __name__ == "__main__":
    try:
        cli.run_cli(main)
        status = 0
    except SystemExit as e:                  # run_cli's exit 2 for a UserError
        status = e.code if isinstance(e.code, int) else 1
    # Leave without the interpreter's teardown: a process of VBench's environment was seen to spin
    # at 100% CPU there for good, after it had written its results.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
