"""
A DNS server for tests/dns/test_dns_answers: crafted answers, one behaviour
per run (argv[1]). Listens on UDP and TCP on one free loopback port, prints
the port on stdout, then closes stdout. Modes: ok, tc (truncated over UDP,
whole over TCP), wrongid, loop (compression loop), trunc (record cut short),
cname (a CNAME with TTL 2 to an A with TTL 300), bigttl, zerottl, many (20
A records), servfail, silent (never answers).
"""
import socket, struct, sys, threading, select
mode = sys.argv[1]
# A free UDP port whose TCP twin is free too (another test may hold it): retry.
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        t.bind(("127.0.0.1", port))
        break
    except OSError:
        u.close()
        t.close()
t.listen(16)
import os; os.write(1, b"%d\n" % port); os.close(1)

def qparse(q):
    qid, flags, qd = struct.unpack(">HHH", q[:6])
    i = 12
    while q[i] != 0:
        i += 1 + q[i]
    qend = i + 5
    qtype = struct.unpack(">H", q[i+1:i+3])[0]
    return qid, flags, q[12:qend], qtype

def rr_a(ttl, ip, name=b"\xc0\x0c"):
    return name + struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip)

def answer(q, tcp=False):
    qid, flags, question, qtype = qparse(q)
    rd = flags & 0x0100
    def hdr(flags, an, i=qid): return struct.pack(">HHHHHH", i, flags, 1, an, 0, 0)
    if qtype != 1:   # AAAA etc: NODATA
        return hdr(0x8400 | rd, 0) + question
    if mode == "tc" and not tcp:
        return hdr(0x8600 | rd, 0) + question
    if mode == "wrongid":
        return hdr(0x8400 | rd, 1, (qid + 1) & 0xffff) + question + rr_a(60, "10.9.9.9")
    if mode == "loop":
        return hdr(0x8400 | rd, 1) + question + b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, 2) + b"\xc0\x29" + rr_a(60, "10.9.9.9")[0:0]
    if mode == "trunc":
        return (hdr(0x8400 | rd, 1) + question + rr_a(60, "10.9.9.9"))[:-3]
    if mode == "cname":
        # name -> c1.x (ttl 300) -> A 10.7.7.7 ttl 300, cname ttl 2
        cn = b"\x02c1\x01x\x00"
        return hdr(0x8400 | rd, 2) + question + b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 2, len(cn)) + cn + rr_a(300, "10.7.7.7", cn)
    if mode == "bigttl":
        return hdr(0x8400 | rd, 1) + question + rr_a(0x80000001, "10.8.8.8")
    if mode == "zerottl":
        return hdr(0x8400 | rd, 1) + question + rr_a(0, "10.8.8.8")
    if mode == "many":
        return hdr(0x8400 | rd, 20) + question + b"".join(rr_a(60, "10.6.0.%d" % i) for i in range(1, 21))
    if mode == "mixed":
        lab = question[1:1+question[0]]
        if lab.startswith(b"s"):
            return None
        if lab.startswith(b"n"):
            return hdr(0x8403 | rd, 0) + question
    if mode == "servfail":
        return hdr(0x8402 | rd, 0) + question
    return hdr(0x8400 | rd, 1) + question + rr_a(60, "10.9.9.9")

def tcp_serve(c):
    try:
        while True:
            l = c.recv(2)
            if len(l) < 2: break
            n = struct.unpack(">H", l)[0]
            q = b""
            while len(q) < n:
                d = c.recv(n - len(q))
                if not d: return
                q += d
            a = answer(q, True)
            c.sendall(struct.pack(">H", len(a)) + a)
    finally:
        c.close()

while True:
    r, _, _ = select.select([u, t], [], [])
    if u in r:
        q, addr = u.recvfrom(4096)
        if mode == "silent": continue
        a = answer(q)
        if a is not None:
            u.sendto(a, addr)
    if t in r:
        c, _ = t.accept()
        threading.Thread(target=tcp_serve, args=(c,), daemon=True).start()
