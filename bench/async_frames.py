import subprocess, sys, struct, re
binpath = sys.argv[1]; pat = re.compile(sys.argv[2]) if len(sys.argv) > 2 else None
secs = []
for line in subprocess.run(["readelf", "-SW", binpath], capture_output=True, text=True).stdout.splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
    if m: secs.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16)))
data = open(binpath, "rb").read()
def off(addr):
    for name, a, o, size in secs:
        if a <= addr < a + size and a != 0: return o + addr - a
syms = []
for line in subprocess.run(["nm", "--defined-only", binpath], capture_output=True, text=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[2].endswith("Tu"):
        o = off(int(parts[0], 16))
        if o is None: continue
        rel, size = struct.unpack("<iI", data[o:o+8])
        syms.append((size, parts[2]))
names = subprocess.run(["swift", "demangle", "--compact"], input="\n".join(s for _, s in syms), capture_output=True, text=True).stdout.splitlines()
rows = sorted(((s, n) for (s, _), n in zip(syms, names)), reverse=True)
for s, n in rows:
    if pat is None or pat.search(n): print("%6d  %s" % (s, n[:170]))
