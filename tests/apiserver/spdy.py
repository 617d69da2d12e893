"""SPDY/3.1 framing for the kscribe TEST/DEMO API server's exec/attach (kubectl falls back to it
when WebSocket is refused, or uses it with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false).

Only what the Kubernetes remotecommand protocol uses: SYN_STREAM / SYN_REPLY with zlib-compressed
header blocks (one compression context per direction, seeded with the SPDY/3 dictionary), DATA
frames with FIN, RST_STREAM, PING (echoed), SETTINGS / WINDOW_UPDATE (ignored: spdystream, the
client library, does no flow control) and GOAWAY.
"""

import struct
import threading
import zlib

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1): these
# words, each with a 32-bit big-endian length prefix, then a fixed tail.
_WORDS = ("options head post put delete trace accept accept-charset accept-encoding "
          "accept-language accept-ranges age allow authorization cache-control connection "
          "content-base content-encoding content-language content-length content-location "
          "content-md5 content-range content-type date etag expect expires from host if-match "
          "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
          "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
          "server te trailer transfer-encoding upgrade user-agent vary via warning "
          "www-authenticate method get status").split() + ["200 OK", "version", "HTTP/1.1", "url",
                                                          "public", "set-cookie", "keep-alive",
                                                          "origin"]
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
         "504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad "
         "Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not "
         "Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec "
         "00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,"
         "image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
         "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
assert len(DICTIONARY) == 1423

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01


def read_exact(rfile, n):
    """Exactly n bytes from rfile; EOFError if the stream ends first."""
    data = b""
    while len(data) < n:
        chunk = rfile.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class Session:
    """One SPDY/3.1 session over a file pair (server side)."""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.deflate = zlib.compressobj(zdict=DICTIONARY)
        self.wlock = threading.Lock()

    def _headers_in(self, block):
        raw = self.inflate.decompress(block)
        (n,) = struct.unpack(">I", raw[:4])
        pos, out = 4, {}
        for _ in range(n):
            (ln,) = struct.unpack(">I", raw[pos:pos + 4])
            name = raw[pos + 4:pos + 4 + ln].decode()
            pos += 4 + ln
            (lv,) = struct.unpack(">I", raw[pos:pos + 4])
            out[name] = raw[pos + 4:pos + 4 + lv].decode()
            pos += 4 + lv
        return out

    def _headers_out(self, headers):
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        with self.wlock:  # one compression context: blocks go out in compression order
            return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def _write(self, frame):
        with self.wlock:
            self.wfile.write(frame)
            self.wfile.flush()

    def _control(self, typ, flags, payload):
        self._write(struct.pack(">HHI", 0x8003, typ, (flags << 24) | len(payload)) + payload)

    def read_frame(self):
        """Returns ('syn', stream_id, headers, flags) / ('data', stream_id, bytes, flags) /
        ('rst', stream_id, None, 0) / ('goaway', 0, None, 0); handles PING itself."""
        while True:
            hdr = read_exact(self.rfile, 8)
            w0, w1 = struct.unpack(">II", hdr)
            flags, length = w1 >> 24, w1 & 0xFFFFFF
            payload = read_exact(self.rfile, length)
            if w0 & 0x80000000:
                typ = w0 & 0xFFFF
                if typ == SYN_STREAM:
                    sid = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    return "syn", sid, self._headers_in(payload[10:]), flags
                if typ == PING:
                    self._control(PING, 0, payload)
                    continue
                if typ == RST_STREAM:
                    return "rst", struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF, None, 0
                if typ == GOAWAY:
                    return "goaway", 0, None, 0
                if typ == HEADERS:
                    self._headers_in(payload[4:])  # keep the compression context in step
                continue  # SETTINGS, WINDOW_UPDATE, ...
            return "data", w0 & 0x7FFFFFFF, payload, flags

    def reply(self, sid, headers=None):
        self._control(SYN_REPLY, 0, struct.pack(">I", sid) + self._headers_out(headers or {}))

    def data(self, sid, payload, fin=False):
        for i in range(0, max(len(payload), 1), 0xFFFF):
            piece = payload[i:i + 0xFFFF]
            last = i + 0xFFFF >= len(payload)
            self._write(struct.pack(">II", sid & 0x7FFFFFFF,
                                    ((FLAG_FIN if fin and last else 0) << 24) | len(piece)) +
                        piece)

    def goaway(self, last_sid=0):
        self._control(GOAWAY, 0, struct.pack(">II", last_sid, 0))
