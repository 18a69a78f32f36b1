"""dbus-broker-launch dressed as dbus-daemon, for libdbus's installed tests.

Usage (through dbus-broker-as-daemon.sh):
  --config-file=FILE|--session|--system [--address=ADDR] [--print-address[=FD]]
  [--print-pid[=FD]] [--nofork|--fork] [--systemd-activation]

dbus-broker-launch takes no listen address and prints none: it wants one listening socket
handed over by systemd (LISTEN_FDS=1 on fd 3), a journal at /run/systemd/journal/socket, and
it connects back to the bus it serves with sd_bus_open_user/system. So this binds the address
itself (--address, else the config's first <listen>), prints it, sets LISTEN_FDS/LISTEN_PID
and DBUS_{SESSION,SYSTEM}_BUS_ADDRESS, and execs the launcher in the same pid.
Without a journal (no systemd running) and with DBUS_BROKER_AS_DAEMON_NS=1 (the .sh sets it
for root inside a private mount namespace) it mounts a tmpfs on /run/systemd and binds a
datagram socket there whose MESSAGE= fields a forked reader copies to stderr; as another uid
it exits 1 saying so.
Differences it cannot hide: the printed address has no guid= (the broker picks its own), and
activation goes to systemd's StartUnit, not to dbus-daemon's ActivationRequest signal.
"""
import ctypes, os, random, re, signal, socket, string, subprocess, sys

def die(msg):
    sys.stderr.write("dbus-broker-as-daemon: %s\n" % msg)
    sys.exit(1)

args = sys.argv[1:]
config = None
address = None
print_address = None
print_pid = None
fork = False
ignored = {"--nofork", "--systemd-activation", "--nopidfile", "--syslog", "--nosyslog",
           "--syslog-only"}
i = 0
while i < len(args):
    a = args[i]
    val = a.split("=", 1)[1] if "=" in a else None
    name = a.split("=", 1)[0]
    if name == "--config-file":
        if val is None:
            i += 1
            if i >= len(args):
                die("--config-file needs a value")
            val = args[i]
        config = val
    elif name == "--session":
        config = "/usr/share/dbus-1/session.conf"
    elif name == "--system":
        config = "/usr/share/dbus-1/system.conf"
    elif name == "--address":
        if val is None:
            i += 1
            val = args[i] if i < len(args) else die("--address needs a value")
        address = val
    elif name in ("--print-address", "--print-pid"):
        if val is None and i + 1 < len(args) and args[i + 1].isdigit():
            i += 1
            val = args[i]
        fd = int(val) if val else 1
        if name == "--print-address":
            print_address = fd
        else:
            print_pid = fd
    elif name == "--fork":
        fork = True
    elif name in ignored:
        pass
    else:
        die("unsupported argument %r (dbus-broker-launch has no equivalent)" % a)
    i += 1

if config is None:
    die("needs --config-file, --session or --system")
try:
    text = open(config).read()
except OSError as e:
    die("cannot read %s: %s" % (config, e))
m = re.search(r"<type>\s*(\w+)\s*</type>", text)
scope = "system" if m and m.group(1) == "system" else "user"
if address is None:
    m = re.search(r"<listen>\s*([^<]*?)\s*</listen>", text)
    if not m:
        die("no --address and no <listen> in %s" % config)
    address = m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

# Only the first address of a ';' list, only unix: transports.
first = address.split(";")[0]
if not first.startswith("unix:"):
    die("listen address %r: only unix: addresses are supported" % first)
params = dict(kv.split("=", 1) for kv in first[5:].split(",") if "=" in kv)
def unescape(v):
    return re.sub(r"%([0-9a-fA-F]{2})", lambda mm: chr(int(mm.group(1), 16)), v)
def escape(v):
    return re.sub(r"[^-0-9A-Za-z_/.\\*]", lambda mm: "%%%02x" % ord(mm.group(0)), v)
rand = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(10))
if "path" in params:
    sock_path = unescape(params["path"]); printed = "unix:path=" + escape(sock_path)
elif "tmpdir" in params or "dir" in params:
    d = unescape(params.get("dir") or params["tmpdir"])
    sock_path = os.path.join(d, "dbus-" + rand); printed = "unix:path=" + escape(sock_path)
elif params.get("runtime") == "yes":
    rt = os.environ.get("XDG_RUNTIME_DIR") or die("unix:runtime=yes needs XDG_RUNTIME_DIR")
    sock_path = os.path.join(rt, "bus"); printed = "unix:path=" + escape(sock_path)
elif "abstract" in params:
    sock_path = "\0" + unescape(params["abstract"]); printed = "unix:abstract=" + params["abstract"]
else:
    die("unix address %r: none of path, dir, tmpdir, runtime=yes, abstract" % first)

# A journal for the launcher's log (it refuses to start without one).
journal = "/run/systemd/journal/socket"
journal_sock = None
if not os.path.exists(journal):
    if os.environ.get("DBUS_BROKER_AS_DAEMON_NS") != "1":
        die("dbus-broker-launch needs %s and, as uid %d, no private mount namespace can "
            "provide one" % (journal, os.getuid()))
    top = "/run/systemd" if os.path.isdir("/run/systemd") else "/run"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", top])
    if r.returncode != 0:
        die("mount tmpfs on %s failed" % top)
    os.makedirs(os.path.dirname(journal), exist_ok=True)
    journal_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal_sock.bind(journal)

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    listener.bind(sock_path)
except OSError as e:
    die("bind %r: %s" % (sock_path, e))
listener.listen(4096)

if journal_sock is not None:
    # Copy the launcher's journal entries (MESSAGE=...) to stderr; die with our pid.
    reader = os.fork()
    if reader == 0:
        listener.close()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        while True:
            data = journal_sock.recv(65536)
            for line in data.split(b"\n"):
                if line.startswith(b"MESSAGE="):
                    sys.stderr.buffer.write(b"dbus-broker-launch: " + line[8:] + b"\n")
                    sys.stderr.flush()
    journal_sock.close()

def launch():
    os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)
    env = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "LISTEN_FDNAMES", "DBUS_BROKER_AS_DAEMON_NS"):
        env.pop(k, None)
    env["LISTEN_FDS"] = "1"
    env["LISTEN_PID"] = str(os.getpid())
    env["DBUS_SYSTEM_BUS_ADDRESS" if scope == "system" else "DBUS_SESSION_BUS_ADDRESS"] = printed
    os.execve("/usr/bin/dbus-broker-launch",
              ["dbus-broker-launch", "--scope", scope, "--config-file", config], env)

def report(pid):
    if print_address is not None:
        os.write(print_address, (printed + "\n").encode())
    if print_pid is not None:
        os.write(print_pid, ("%d\n" % pid).encode())

if fork:
    child = os.fork()
    if child == 0:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1):
            os.dup2(null, fd)
        launch()
    report(child)
    os._exit(0)
report(os.getpid())
launch()
