# The Python worker follows a 307 to the writer and retries its 503 (run by tests/worker_redirect.rs).
import sys, threading, json
from http.server import BaseHTTPRequestHandler, HTTPServer
sys.path.insert(0, sys.argv[1])
import worker
seen=[]
class W(BaseHTTPRequestHandler):
    n=0
    def do_POST(self):
        body=self.rfile.read(int(self.headers["Content-Length"]))
        seen.append(("writer", self.path, self.headers.get("Authorization"), body))
        W.n+=1
        if W.n==1:
            self.send_response(503); self.send_header("Retry-After","0"); self.send_header("Content-Length","0"); self.end_headers(); return
        out=b'{"ok":true}'
        self.send_response(200); self.send_header("Content-Length",str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self,*a): pass
w=HTTPServer(("127.0.0.1",0),W); threading.Thread(target=w.serve_forever,daemon=True).start()
wurl="http://127.0.0.1:%d"%w.server_port
class F(BaseHTTPRequestHandler):
    def do_POST(self):
        body=self.rfile.read(int(self.headers["Content-Length"]))
        seen.append(("follower", self.path, self.headers.get("Authorization"), body))
        self.send_response(307); self.send_header("Location", wurl+self.path); self.send_header("Content-Length","0"); self.end_headers()
    def log_message(self,*a): pass
f=HTTPServer(("127.0.0.1",0),F); threading.Thread(target=f.serve_forever,daemon=True).start()
c=worker.Client("http://127.0.0.1:%d"%f.server_port, token="t")
print(c.call("POST","/v1/tasks?x=1",{"a":1}))
for s in seen: print(s)
assert [s[0] for s in seen]==["follower","writer","writer"] and all(s[2]=="Bearer t" and s[1]=="/v1/tasks?x=1" for s in seen)
print("OK")
