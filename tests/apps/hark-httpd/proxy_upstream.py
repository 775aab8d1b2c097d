#!/usr/bin/env python3
"""A small HTTP/1.1 upstream for hark-httpd's proxy tests.

Usage: proxy_upstream.py MODE [ARG]; it binds 127.0.0.1 on a port the kernel
chooses and prints "port N" on stdout once it listens.

Modes:
  app       keep-alive HTTP/1.1 server:
              POST/PUT any path  -> "len=N md5=HEX" of the body (Content-Length or chunked)
              POST .../early     -> 100 KiB of "e" at once, the body unread (then it lingers)
              GET .../headers    -> the request head as received
              GET .../count      -> connections accepted so far
              GET .../chunked    -> a chunked body ("chunk 0\\n" .. "chunk 9\\n")
              GET .../untilclose -> a body without length, ended by closing
              GET .../hop        -> hop-by-hop headers that must not reach the client
              GET .../hints      -> 103 Early Hints (with a hop-by-hop header), then 200
              GET .../many/N     -> 200 with N header fields X-H-0 .. X-H-(N-1)
              GET .../nocontent  -> 204
              GET .../http10     -> an HTTP/1.0 response, then closes
              GET .../dupcl      -> "hello" with its Content-Length sent twice
              GET .../sleep/S    -> "slept" after S seconds
              GET .../hangup     -> closes without an answer
              GET .../truncated  -> 10 of the 1000 bytes announced, then closes
              GET .../health     -> 200, or 500 while the file ARG exists
              GET anything else  -> "app <path>"
  slow S    answers any request after S seconds
  stall S   reads a request head, waits S seconds before reading its body (small buffers)
  tinystall S  the same with the smallest buffers and segments (TCP_MAXSEG 536): what the
            sender's kernel holds for it is a few KiB, less than one 64 KiB write
  close F   accepts and closes at once; the count of connections goes to file F

With PROXY_UPSTREAM_ALSO=ADDR in the environment it listens on ADDR (another
loopback address) too, on the same port: one server for a name with two
addresses.
"""
import hashlib
import os
import socket
import sys
import threading
import time

MODE = sys.argv[1]
ARG = sys.argv[2] if len(sys.argv) > 2 else ""
lock = threading.Lock()
accepted = 0


def read_head(f):
    lines = []
    while True:
        line = f.readline(65536)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def read_body(f, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += f.read(size)
            f.readline()
    n = int(headers.get("content-length", "0"))
    return f.read(n) if n else b""


def send(sock, status, body, extra=(), length=True):
    head = "HTTP/1.1 %s\r\n" % status
    for h in extra:
        head += h + "\r\n"
    if length:
        head += "Content-Length: %d\r\n" % len(body)
    sock.sendall(head.encode() + b"\r\n" + body)


def app(sock, f, method, path, lines, headers):
    if method == "POST" and path.endswith("/early"):
        # An answer before the body (a refusal, say); then what comes is read
        # and dropped until the proxy hangs up, so that our own close sends no reset.
        send(sock, "200 OK", b"e" * 102400, ["Connection: close"])
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        return False
    if method in ("POST", "PUT"):
        body = read_body(f, headers)
        out = "len=%d md5=%s" % (len(body), hashlib.md5(body).hexdigest())
        send(sock, "200 OK", out.encode())
        return True
    read_body(f, headers)
    if path.endswith("/headers"):
        send(sock, "200 OK", ("\n".join(lines) + "\n").encode())
    elif path.endswith("/count"):
        with lock:
            n = accepted
        send(sock, "200 OK", str(n).encode())
    elif path.endswith("/chunked"):
        out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for i in range(10):
            data = ("chunk %d\n" % i).encode()
            out += b"%x\r\n%s\r\n" % (len(data), data)
        sock.sendall(out + b"0\r\nX-Trailer: t\r\n\r\n")
    elif path.endswith("/untilclose"):
        send(sock, "200 OK", b"", ["Connection: close"], length=False)
        for i in range(5):
            sock.sendall(("line %d\n" % i).encode())
            time.sleep(0.02)
        return False
    elif path.endswith("/hop"):
        send(sock, "200 OK", b"hop", ["Connection: X-Secret", "X-Secret: 1",
                                      "Keep-Alive: timeout=3", "Upgrade: h2c",
                                      "Proxy-Connection: keep-alive", "X-Kept: yes"])
    elif path.endswith("/truncated"):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        return False
    elif path.endswith("/connlen"):
        # A connection option naming the framing header (RFC 9110 7.6.1 forbids it).
        send(sock, "200 OK", b"hello", ["Connection: Content-Length"])
    elif path.endswith("/hints"):
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n"
                     b"Connection: X-Hop\r\nX-Hop: 1\r\n\r\n")
        send(sock, "200 OK", b"hinted")
    elif "/many/" in path:
        # A head with N fields of its own (/many/N).
        n = int(path.rsplit("/", 1)[1])
        send(sock, "200 OK", b"many", ["X-H-%d: %d" % (i, i) for i in range(n)])
    elif "/sleep/" in path:
        time.sleep(float(path.rsplit("/", 1)[1]))
        send(sock, "200 OK", b"slept")
    elif path.endswith("/hangup"):
        return False
    elif path.endswith("/dupcl"):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    elif path.endswith("/http10"):
        sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!")
        return False
    elif path.endswith("/nocontent"):
        send(sock, "204 No Content", b"", length=False)
    elif path.endswith("/health"):
        if ARG and os.path.exists(ARG):
            send(sock, "500 Internal Server Error", b"sick")
        else:
            send(sock, "200 OK", b"ok")
    else:
        send(sock, "200 OK", ("app " + path).encode())
    return headers.get("connection", "").lower() != "close"


def serve(sock):
    f = sock.makefile("rb")
    try:
        while True:
            lines = read_head(f)
            if not lines:
                return
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if MODE == "slow":
                read_body(f, headers)
                time.sleep(float(ARG))
                send(sock, "200 OK", b"late")
                continue
            if MODE in ("stall", "tinystall"):
                time.sleep(float(ARG))
                body = read_body(f, headers)
                send(sock, "200 OK", b"len=%d" % len(body))
                continue
            if not app(sock, f, method, path, lines, headers):
                return
    except (OSError, ValueError):
        pass
    finally:
        f.close()
        sock.close()


def main():
    lsock = socket.socket()
    if MODE == "stall":  # no receive-buffer autotuning: what is not read stays with the sender
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    if MODE == "tinystall":  # the MSS is advertised in the SYN-ACK: the sender's buffer shrinks
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    port = lsock.getsockname()[1]
    also = os.environ.get("PROXY_UPSTREAM_ALSO")
    if also:
        other = socket.socket()
        other.bind((also, port))
        other.listen(128)
        threading.Thread(target=accept_loop, args=(other,), daemon=True).start()
    print("port %d" % port, flush=True)
    accept_loop(lsock)


def accept_loop(lsock):
    global accepted
    while True:
        sock, _ = lsock.accept()
        with lock:
            accepted += 1
            n = accepted
        if MODE == "close":
            sock.close()
            with open(ARG + ".tmp", "w") as out:
                out.write(str(n))
            os.rename(ARG + ".tmp", ARG)
            continue
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
