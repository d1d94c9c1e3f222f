#!/usr/bin/env python3
"""Kiln's benchmarks, side by side with the tools people use today.

Runs kiln and its peers in turn (A B C, then B C A, ..., after a warm-up round) against the dev
environment's plain registry and reports, per case, the median wall time, CPU time and
peak RSS of each, and the ratio kiln/peer per pair and its median. Ratios, not absolute
times, because the machine is shared and noisy.

    bench/run.py                 # the full run: a ~500 MB, 5-layer image, 5 pairs
    bench/run.py --quick         # ~50 MB and 3 pairs, to try the instrument
    bench/run.py --only in-rootfs,out-push
    bench/run.py --only build-cold,build-one-change
    bench/run.py --only kept-rebuild,kept-cache-mount   # build's own buildkitd, state kept or not
    bench/run.py --smoke --out DIR  # tiny inputs, one pair, debug binaries: the test suite's check

Writes bench/results/latest.json and bench/results/latest.md.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def measure(cmd, stdin=None, cwd=None):
    """Runs cmd; returns wall seconds, CPU seconds (user+sys) and peak RSS in MiB.

    The peak RSS is the child's `ru_maxrss`, which starts from what the forked Python
    process had; the test image is made in a separate process so that floor stays small
    (about 10-20 MiB) and the same for kiln and its peer."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, shell=isinstance(cmd, str))
    if stdin is not None:
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    # For a shell pipeline, ru_maxrss is the largest single process's, which is what we want.
    LAST_STDERR[0] = err.decode(errors="replace")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


LAST_STDERR = [""]


def make_context(ctx, files, total, seed=7):
    """A build context of `files` files totalling about `total` bytes, 100 to a folder, with
    sizes spread from empty to twice the mean; the same every time for the same arguments."""
    rng = random.Random(seed)
    mean = total // files
    for i in range(files):
        d = ctx / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(rng.randbytes(rng.randint(0, 2 * mean)))


def check_case(results, want, work, env, tags):
    """`check` in semver mode over a repository of `tags` versions, with the cursor at the
    newest: how many HTTP requests kiln makes, counted in the registry's own access log."""
    if not want("check-requests"):
        return
    import http.client
    plain = env["registries"]["plain"]["addr"]
    repo = f"bench/tags-{os.getpid()}"
    print(f"check, semver, {tags} tags, cursor at the newest: requests in the registry log", flush=True)
    # One tiny image, tagged `tags` times by PUTting its manifest (no blobs needed beyond it).
    layout = work / "tags-layout"
    subprocess.run([sys.executable, __file__, "--make-image", str(layout), "1024"], check=True, capture_output=True)
    versions = [f"{1 + i // 100}.{(i // 10) % 10}.{i % 10}" for i in range(tags)]
    sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{plain}/{repo}:{versions[0]}")
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    host, port = plain.split(":")
    conn = http.client.HTTPConnection(host, int(port))
    for v in versions[1:]:
        conn.request("PUT", f"/v2/{repo}/manifests/{v}", body=manifest,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            raise RuntimeError(f"tagging {v}: {r.status}")
    newest = versions[-1]
    log = ROOT / ".dev" / "logs" / "registry-plain.log"
    start = log.stat().st_size
    request = json.dumps({"source": {"repository": f"{plain}/{repo}", "semver_constraint": ">= 0.0.0"},
                          "version": {"tag": newest, "digest": digest}})
    out = subprocess.run([str(RELEASE / "check")], input=request, capture_output=True, text=True, check=True)
    time.sleep(0.5)  # the registry writes its log line after answering
    with open(log, "rb") as f:
        f.seek(start)
        lines = [l for l in f.read().decode(errors="replace").splitlines() if '"kiln/' in l and " HTTP/1.1\" " in l]
    emitted = json.loads(out.stdout)
    results["cases"]["check-requests"] = {"tags": tags, "requests": len(lines), "versions": emitted,
                                          "request_lines": [l.split('"')[1] for l in lines]}
    print(f"  {len(lines)} requests: " + ", ".join(l.split('"')[1] for l in lines), flush=True)


def big_layer_case(results, want, work, env, size):
    """Peak RSS of `in` (rootfs) and `out` for an image of one `size`-byte layer: memory must
    not grow with the layer."""
    if not want("rss-1g"):
        return
    plain = env["registries"]["plain"]["addr"]
    print(f"in and out of one {size >> 20} MiB layer: peak RSS", flush=True)
    layout = work / "big-layout"
    made = subprocess.run([sys.executable, __file__, "--make-image", str(layout), str(size), "1"], check=True,
                          capture_output=True, text=True)
    digest, _ = json.loads(made.stdout)
    repo = f"{plain}/bench/big-{os.getpid()}"
    archive = work / "big-push" / "image.tar"
    archive.parent.mkdir()
    sh("skopeo", "copy", "-q", f"oci:{layout}:bench", f"oci-archive:{archive}")
    shutil.rmtree(layout)
    push = measure([str(RELEASE / "out"), str(archive.parent)],
                   stdin=json.dumps({"source": {"repository": repo}, "params": {"image": "image.tar", "version": "1.0.0"}}))
    dest = work / "big-in"
    dest.mkdir()
    fetch = measure([str(RELEASE / "in"), str(dest)],
                    stdin=json.dumps({"source": {"repository": repo}, "version": {"tag": "1.0.0", "digest": digest}}))
    shutil.rmtree(dest, ignore_errors=True)
    results["cases"]["rss-1g"] = {"layer_bytes": size, "out": push, "in": fetch}
    print(f"  out {push['wall']:.1f}s {push['rss_mib']:.0f} MiB; in {fetch['wall']:.1f}s {fetch['rss_mib']:.0f} MiB",
          flush=True)


def build_cases(results, want, n, quick, work, env):
    """Context transfer: kiln's build vs `docker buildx build` on the same engine."""
    files, total = {"smoke": (200, 2 << 20), True: (2_000, 20 << 20), False: (20_000, 200 << 20)}[quick]
    docker = str(ROOT / ".dev" / "tools" / "engine" / "usr" / "bin" / "docker")
    denv = dict(os.environ, DOCKER_HOST=f"unix://{env['docker']['socket']}",
                DOCKER_CONFIG=str(ROOT / ".dev" / "docker" / "cli"))
    kenv = dict(os.environ, BUILDKIT_HOST=f"docker+unix://{env['docker']['socket']}", CONTEXT="ctx")
    plain = env["registries"]["plain"]["addr"]
    root = work / "build"
    ctx = root / "ctx"
    print(f"making a build context: {files} files, {total >> 20} MiB", flush=True)
    make_context(ctx, files, total)
    # The RUN needs every file (a bind mount of the whole context) but makes a tiny image,
    # so the exports are alike and small and the transfer is what differs.
    (ctx / "Dockerfile").write_text(f"FROM {plain}/library/busybox:latest\n"
                                    "RUN --mount=type=bind,target=/ctx find /ctx -type f | wc -l > /count\n")
    kiln = lambda: measure([str(RELEASE / "kiln-build")], cwd=root)
    buildx = lambda: measure([docker, "buildx", "build", "--builder", "default", "-q", "-o",
                              f"type=docker,dest={root}/buildx.tar", "ctx"], cwd=root)

    def with_env(fn, e):
        def run():
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(e)
            try:
                return fn()
            finally:
                os.environ.clear()
                os.environ.update(saved)
        return run
    prune = lambda: sh(docker, "builder", "prune", "-af", env=denv, stdout=subprocess.DEVNULL)
    if want("build-cold"):
        print("build, cold (engine cache pruned): kiln build  vs  docker buildx build", flush=True)
        results["cases"]["build-cold"] = pairs("build-cold", with_env(kiln, kenv), [("buildx", with_env(buildx, denv), 1.0)], n,
                                               setup=prune)
    if want("build-one-change"):
        print("build, one file changed: kiln build  vs  docker buildx build", flush=True)
        changed = ctx / "d000" / "f00000"
        sent = []

        def change():
            changed.write_bytes(os.urandom(4096))

        def kiln_counted():
            m = with_env(kiln, kenv)()
            line = [l for l in LAST_STDERR[0].splitlines() if l.startswith("build: context: sent ")]
            sent.append(line[-1] if line else "(no transfer line)")
            return m
        with_env(kiln, kenv)()
        with_env(buildx, denv)()
        results["cases"]["build-one-change"] = pairs("build-one-change", kiln_counted, [("buildx", with_env(buildx, denv), 1.0)], n,
                                                     setup=change)
        # Only the changed file's bytes may cross the wire.
        ok = all(s.endswith(" 4096 bytes") and " sent 1 of " in s for s in sent[1:])
        results["cases"]["build-one-change"]["kiln_sent"] = sent
        print(f"  kiln sent: {sent[-1]} ({'only the changed file' if ok else 'MORE THAN THE CHANGED FILE'})")
        if not ok:
            raise RuntimeError(f"kiln sent more than the changed file: {sent}")


def kept_state_cases(results, want, n, quick, work, env):
    """The state of the buildkitd `build` starts, kept in the task's cache folder, against the
    same build on a state of its own (no cache folder: what oci-build-task does). Each side
    has a task folder of its own with the same context."""
    if not (want("kept-rebuild") or want("kept-cache-mount")):
        return
    import http.server
    import threading
    plain = env["registries"]["plain"]["addr"]
    path = f"{env['buildkitd']['bin_dir']}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    sides = {}
    for side in ("kept", "cold"):
        root = work / f"kept-{side}"
        (root / "ctx").mkdir(parents=True)
        (root / "tmp").mkdir()
        if side == "kept":
            (root / "cache").mkdir()
        vars = {"PATH": path, "TMPDIR": str(root / "tmp"), "CONTEXT": "ctx",
                "BUILDKIT_EXTRA_CONFIG": f'[registry."{plain}"]\nhttp = true\n'}
        cmd = ["env", "-i"] + [f"{k}={v}" for k, v in vars.items()] + [str(RELEASE / "kiln-build")]
        sides[side] = (root, lambda cmd=cmd, root=root: measure(cmd, cwd=root))

    def write(name, data):
        for root, _ in sides.values():
            p = root / "ctx" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data if isinstance(data, bytes) else data.encode())

    kept, cold = sides["kept"][1], sides["cold"][1]
    if want("kept-rebuild"):
        # Work worth keeping: a step that hashes and compresses (a stand-in for a compile).
        mib = {"smoke": 2, True: 16, False: 64}[quick]
        write("Dockerfile", f"FROM {plain}/library/busybox:latest\n"
                            f"RUN head -c {mib << 20} /dev/urandom | gzip -1 | sha256sum > /sum\n"
                            "COPY Dockerfile /\n")
        print("build, unchanged rebuild: kiln build on its kept state  vs  the same build cold", flush=True)
        results["cases"]["kept-rebuild"] = pairs("kept-rebuild", kept, [("cold", cold, 0.20)], n)
    if want("kept-cache-mount"):
        size = {"smoke": 4, True: 32, False: 100}[quick] << 20
        served = work / "downloads"
        served.mkdir()
        with open(served / "blob", "wb") as blob:
            for _ in range(size >> 20):
                blob.write(os.urandom(1 << 20))
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/blob"
        # As a package manager does: sources first, then the downloads, kept in a cache mount.
        write("Dockerfile", f"FROM {plain}/library/busybox:latest\n"
                            "COPY src /src\n"
                            "RUN --mount=type=cache,target=/downloads "
                            f"([ -f /downloads/blob ] || wget -q -O /downloads/blob {url})"
                            " && sha256sum /downloads/blob /src/* > /sums\n")
        print(f"build, one source change, a RUN that downloads {size >> 20} MiB into a cache mount: "
              "kept state  vs  cold", flush=True)
        change = lambda: write("src/main.c", os.urandom(64))
        try:
            results["cases"]["kept-cache-mount"] = pairs("kept-cache-mount", kept, [("cold", cold, None)], n,
                                                         setup=change)
        finally:
            server.shutdown()


def make_layer(path, size, seed, text_like):
    """A gzip layer of about `size` bytes of content: incompressible or text-like."""
    rng = random.Random(seed)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        remaining, n = size, 0
        while remaining > 0:
            chunk = min(remaining, 16 << 20)
            if text_like:
                words = [b"kiln", b"layer", b"registry", b"concourse", b"image", b"build", b"\n"]
                data = b" ".join(rng.choice(words) for _ in range(chunk // 6))[:chunk]
            else:
                data = rng.randbytes(chunk)
            info = tarfile.TarInfo(f"data/file-{seed}-{n}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            remaining -= chunk
            n += 1
    tar_bytes = raw.getvalue()
    with open(path, "wb") as f:
        f.write(gzip.compress(tar_bytes, compresslevel=1, mtime=0))
    return "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def make_image(layout, total, layers=5):
    """An OCI layout with `layers` gzip layers totalling about `total` bytes, tagged `bench`."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    descriptors, diff_ids = [], []
    for i in range(layers):
        tmp = layout / f"layer{i}.gz"
        diff_ids.append(make_layer(tmp, total // layers, seed=i, text_like=(i % 2 == 1)))
        data = tmp.read_bytes()
        tmp.unlink()
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(data)})
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(json.dumps(config).encode())},
                "layers": descriptors}
    m = put(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
                                                "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return m["digest"], descriptors


def pairs(case, kiln, peers, n, setup=None):
    """Runs kiln and each peer in turn, n rounds after one warm-up round. `peers` is a list of
    (name, run, target): target is the most kiln/peer may be, or None for no target."""
    rows = []
    sides = [("kiln", kiln)] + [(p[0], p[1]) for p in peers]
    for i in range(n + 1):
        row = {}
        # Each round starts one further along, so no side always runs first or always
        # follows the same one (whose writes the kernel may still be flushing).
        for name, run in sides[i % len(sides):] + sides[:i % len(sides)]:
            if setup:
                setup()
            row[name] = run()
        if i == 0:
            continue
        rows.append(row)
        print(f"  {case} round {i}: kiln {row['kiln']['wall']:.2f}s  " +
              "  ".join(f"{name} {row[name]['wall']:.2f}s ({row['kiln']['wall'] / row[name]['wall']:.2f})"
                        for name, _, _ in peers), flush=True)
    med = lambda side, key: statistics.median(r[side][key] for r in rows)
    result = {"rounds": rows, "kiln": {k: med("kiln", k) for k in ("wall", "cpu", "rss_mib")}, "peers": {}}
    for name, _, target in peers:
        ratio = statistics.median(r["kiln"]["wall"] / r[name]["wall"] for r in rows)
        result["peers"][name] = {**{k: med(name, k) for k in ("wall", "cpu", "rss_mib")},
                                 "ratio_median": ratio, "target": target,
                                 "met": None if target is None else ratio <= target}
    # The first peer's ratio, for a quick look.
    result["ratio_median"] = result["peers"][peers[0][0]]["ratio_median"]
    return result


def limit_push(layout, registry, repo):
    """The simplest client there is, as a shell command: each blob of `layout` uploaded
    with one POST and one `curl -T` monolithic `PUT ?digest=`, all at once, then the
    manifest. Nothing is hashed or checked on the client: a push can be no faster."""
    index = json.loads((layout / "index.json").read_text())
    top = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / top["digest"].split(":")[1]).read_bytes())
    base = f"http://{registry}/v2/{repo}"
    script = [
        "set -e",
        # up FILE DIGEST: open an upload, then PUT the whole file to it under its digest.
        "up() { loc=$(curl -sf -o /dev/null -D - -X POST " + base + "/blobs/uploads/ | tr -d '\\r' |"
        " awk 'tolower($1)==\"location:\" {print $2}'); case $loc in /*) loc=http://" + registry + "$loc;; esac;"
        " case $loc in *'?'*) sep='&';; *) sep='?';; esac;"
        " curl -sf -o /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' -T \"$1\""
        " \"$loc${sep}digest=$2\"; }",
        "pids=''",
    ]
    for d in [manifest["config"]] + manifest["layers"]:
        script.append(f"up {blobs / d['digest'].split(':')[1]} {d['digest']} & pids=\"$pids $!\"")
    script.append("for p in $pids; do wait $p; done")
    script.append(f"curl -sf -o /dev/null -X PUT -H 'Content-Type: {top['mediaType']}'"
                  f" --data-binary @{blobs / top['digest'].split(':')[1]} {base}/manifests/1.0.0")
    return "\n".join(script)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", help="where results go (default bench/results)")
    ap.add_argument("--pairs", type=int)
    ap.add_argument("--only", default="")
    ap.add_argument("--make-image", nargs="+", metavar="LAYOUT BYTES [LAYERS]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_image:
        layers = int(args.make_image[2]) if len(args.make_image) > 2 else 5
        print(json.dumps(make_image(Path(args.make_image[0]), int(args.make_image[1]), layers)))
        return 0
    global RELEASE
    if args.smoke:
        # The suite's check that the instrument still works: its debug binaries, no release build.
        RELEASE = ROOT / "target" / "debug"
    size = (4 if args.smoke else 50 if args.quick else 500) << 20
    n = args.pairs or (1 if args.smoke else 3 if args.quick else 5)
    only = set(filter(None, args.only.split(",")))
    want = lambda c: not only or c in only

    sh(str(ROOT / "scripts" / "dev-env"), "up", stdout=subprocess.DEVNULL)
    if not args.smoke:
        sh("cargo", "build", "-q", "--release", "-p", "kiln-resource", "-p", "kiln-build-task", cwd=ROOT)
    env = json.loads((ROOT / ".dev" / "env.json").read_text())
    plain = env["registries"]["plain"]["addr"]
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    results = {"size_bytes": size, "pairs": n, "cases": {}}
    try:
        print(f"making a {size >> 20} MiB test image", flush=True)
        layout = work / "layout"
        made = subprocess.run([sys.executable, __file__, "--make-image", str(layout), str(size)], check=True,
                              capture_output=True, text=True)
        digest, layers = json.loads(made.stdout)
        repo = f"bench/image-{os.getpid()}"
        sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{plain}/{repo}:bench")
        source = {"repository": f"{plain}/{repo}"}
        get_req = lambda fmt: json.dumps({"source": source, "version": {"tag": "bench", "digest": digest},
                                          "params": {"format": fmt}})
        out_dir = work / "out"

        def fresh():
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()

        crane = env["crane"]
        if want("in-rootfs"):
            print("in, rootfs: kiln in  vs  crane export | tar -x  and  skopeo copy + umoci unpack", flush=True)
            results["cases"]["in-rootfs"] = pairs(
                "in-rootfs",
                lambda: measure([str(RELEASE / "in"), str(out_dir)], stdin=get_req("rootfs")),
                [("crane", lambda: measure(f"mkdir {out_dir}/rootfs && {crane} export --insecure {plain}/{repo}:bench -"
                                           f" | tar -x -C {out_dir}/rootfs"), 0.35),
                 ("skopeo+umoci", lambda: measure(
                     f"skopeo copy -q --src-tls-verify=false docker://{plain}/{repo}:bench oci:{out_dir}/l:x"
                     f" && umoci unpack --image {out_dir}/l:x {out_dir}/bundle"), 0.4)],
                n, setup=fresh)
        if want("in-oci"):
            print("in, oci tarball: kiln in  vs  crane pull  and  skopeo copy docker-archive:", flush=True)
            results["cases"]["in-oci"] = pairs(
                "in-oci",
                lambda: measure([str(RELEASE / "in"), str(out_dir)], stdin=get_req("oci")),
                [("crane", lambda: measure([crane, "pull", "--insecure", f"{plain}/{repo}:bench",
                                            f"{out_dir}/image.tar"]), None),
                 ("skopeo", lambda: measure(["skopeo", "copy", "-q", "--src-tls-verify=false",
                                             f"docker://{plain}/{repo}:bench", f"docker-archive:{out_dir}/image.tar"]),
                  0.5)],
                n, setup=fresh)
        counter = iter(range(10_000))
        target = {}

        def new_repo():
            target["repo"] = f"bench/push-{os.getpid()}-{next(counter)}"
            # What the last push wrote reaches the disk now, not while the next one runs.
            os.sync()
            # skopeo remembers where it saw each blob and mounts it from there instead of
            # uploading; a push "to an empty repository" must not, so it forgets first.
            for cache in ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
                          os.path.expanduser("~/.local/share/containers/cache/blob-info-cache-v1.boltdb")):
                try:
                    os.unlink(cache)
                except FileNotFoundError:
                    pass
        # Every client pushes the same OCI layout (`work/layout`), to a new repository.
        put_req = lambda: json.dumps({"source": {"repository": f"{plain}/{target['repo']}"},
                                      "params": {"image": "layout", "version": "1.0.0"}})
        kiln_push = lambda: measure([str(RELEASE / "out"), str(work)], stdin=put_req())
        crane_push = lambda: measure([crane, "push", "--insecure", str(layout), f"{plain}/{target['repo']}:1.0.0"])
        skopeo_push = lambda: measure(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench",
                                       f"docker://{plain}/{target['repo']}:1.0.0"])
        if want("out-push"):
            print("out, push to an empty repository: kiln out  vs  crane push, skopeo copy, the limit (curl)",
                  flush=True)
            results["cases"]["out-push"] = pairs(
                "out-push", kiln_push,
                [("crane", crane_push, 1.00),
                 ("limit", lambda: measure(limit_push(layout, plain, target["repo"])), 1.05),
                 ("skopeo", skopeo_push, 0.5)],
                n, setup=new_repo)
        if want("out-repush"):
            print("out, re-push when every blob exists: kiln out  vs  crane push, skopeo copy", flush=True)
            new_repo()
            kiln_push()
            results["cases"]["out-repush"] = pairs(
                "out-repush", kiln_push, [("crane", crane_push, 0.5), ("skopeo", skopeo_push, 0.5)], n)
        if want("in-throughput"):
            # The physical reference: one core decompressing and hashing the same layers.
            print("in, rootfs  vs  gzip -dc | sha256sum of every layer (one core)", flush=True)
            blobs = " ".join(str(layout / "blobs" / "sha256" / d["digest"].split(":")[1]) for d in layers)
            results["cases"]["in-throughput"] = pairs(
                "in-throughput",
                lambda: measure([str(RELEASE / "in"), str(out_dir)], stdin=get_req("rootfs")),
                [("gzip+sha256sum", lambda: measure(f"for b in {blobs}; do gzip -dc $b | sha256sum >/dev/null; done"),
                  None)],
                n, setup=fresh)
        check_case(results, want, work, env, 50 if args.smoke else 1000)
        # Before the build cases: a child's peak RSS starts from this process's size when it
        # forks, and the cache-mount case's download server leaves this process larger.
        big_layer_case(results, want, work, env, (8 << 20) if args.smoke else (1 << 30))
        build_cases(results, want, n, "smoke" if args.smoke else args.quick, work, env)
        kept_state_cases(results, want, n, "smoke" if args.smoke else args.quick, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = Path(args.out) if args.out else ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Benchmark ({size >> 20} MiB image, {n} rounds, medians)", "",
             "| case | peer | kiln/peer | target | kiln wall | peer wall | kiln CPU | peer CPU | kiln RSS | peer RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for case, r in results["cases"].items():
        if "requests" in r:
            lines.append(f"| {case} ({r['tags']} tags) | | {r['requests']} HTTP requests | ≤ 3 | | | | | | |")
            continue
        if "layer_bytes" in r:
            worst = max(r["out"]["rss_mib"], r["in"]["rss_mib"])
            lines.append(f"| {case}: out / in of one {r['layer_bytes'] >> 20} MiB layer | | | ≤ 32 MiB"
                         f" {'met' if worst <= 32 else 'MISSED'} | {r['out']['wall']:.1f}s / {r['in']['wall']:.1f}s"
                         f" | | | | {r['out']['rss_mib']:.0f} / {r['in']['rss_mib']:.0f} MiB | |")
            continue
        k = r["kiln"]
        for name, p in r["peers"].items():
            target = "" if p["target"] is None else f"≤ {p['target']:.2f} {'met' if p['met'] else 'MISSED'}"
            lines.append(f"| {case} | {name} | **{p['ratio_median']:.2f}** | {target} | {k['wall']:.2f}s |"
                         f" {p['wall']:.2f}s | {k['cpu']:.2f}s | {p['cpu']:.2f}s | {k['rss_mib']:.0f} MiB |"
                         f" {p['rss_mib']:.0f} MiB |")
    (out / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
