#!/usr/bin/env python3
"""Writes the starting corpora of the fuzz targets from lookout's real fixtures.

Run from the repository root: `python3 fuzz/seeds/make_seeds.py`. It only adds files to
fuzz/corpus/<target>/ (named by content hash), so running it again is harmless; `cargo fuzz cmin`
then keeps the inputs that add coverage.
"""
import hashlib, json, pathlib, random, re

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
random.seed(11)


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


compose_files = sorted((ROOT / "tests/fixtures/compose").rglob("*.y*ml"))
compose_texts = [p.read_text() for p in compose_files]
edge_compose = [
    "x-base: &base\n  image: redis\nservices:\n  a:\n    <<: *base\n    image: redis:7\n  b:\n    <<: *base\n",
    "x-base: &base\n  image: redis:6\nservices:\n  a:\n    <<: *base\n  b:\n    <<: *base\n  c:\n    image: redis:6\n",
    "x-worker: &worker\n  image: ghcr.io/acme/worker:3.1 # shared\n  restart: unless-stopped\n\nservices:\n  mail:\n    <<: *worker\n    command: mail\n  jobs:\n    <<: *worker\n    command: jobs\n",
    "services:\n  a:\n    image: \"nginx:1\"\n  b:\n    image: postgres:${PG_TAG:-16}\n  c:\n    image: ${PG_TAG}\n",
    "services:\n  web:\n    image: &img 'nginx:1.25' # pinned\n  web2:\n    image: *img\n",
    "services: {web: {image: \"nginx:1.25\", ports: [\"80:80\"]}, db: {image: postgres}}\n",
    "version: '3.8'\r\nservices:\r\n  web:\r\n    image: nginx:1.25\r\n    environment:\r\n      - A=${TAG}\r\n",
    "services:\n  web:\n    image: >\n      nginx:1\n",
    "services:\n  web:\n    build: .\n  db:\n    image: 1.5\n",
    "---\nservices:\n  \"quoted name\":\n    image: \"reg:5000/a/b:1\\t\"\n...\n",
]

# Compose locator and editor: SERVICE<TAB>IMAGE<TAB>OPTIONS, then the file.
images = ["registry.example:5000/team/app:2.0.1", "nginx:1.27", "1.5", "null", "a'b", "x\"y",
          "nginx:1.27@sha256:" + "cd" * 32]
for text in compose_texts + edge_compose:
    names = re.findall(r"^  ([A-Za-z0-9_.\"' -]+):\s*$", text, re.M) or ["web"]
    for name in names:
        name = name.strip("\"'")
        opts = random.choice(["", "group", "pin", "group,pin"])
        put("compose_edit", f"{name}\t{random.choice(images)}\t{opts}\n{text}")

# References: every image in the fixtures and examples, and the grammar's edge cases.
refs = set()
for path in list(compose_files) + sorted((ROOT / "config").rglob("*")):
    if path.is_file():
        refs.update(m.strip("\"'") for m in re.findall(r"image\"?\s*[:=]\s*\"?([^\s\"#]+)", path.read_text()))
refs.update([
    "nginx", "nginx:1.27", "docker.io/library/nginx:latest", "index.docker.io/nginx:1",
    "registry:5000/team/app:1.2", "localhost/app", "[::1]:5000/app:1", "127.0.0.1:5000/a/b/c:t",
    "ghcr.io/o/r@sha256:" + "01" * 32, "redis:7@sha256:" + "ab" * 32, "a--b/c", "Example.com/app:1",
    "foo_bar:TAG", "my-registry.example.com/a__b/c-d/e.f:tag_1.0-x", "Nginx", "nginx:", "nginx:-x",
    "a/-b", "nginx@md5:0123", "[::1/app", "x:y:z:1", "nginx:1.27/../x", "a" * 256,
])
for r in sorted(refs):
    put("reference", r)

# Tag lists and policies: settings, `---`, then a sample of a real tag history.
policies = [
    "policy=semver", "policy=semver\nupdate_level=minor", "policy=semver\nupdate_level=patch",
    "semver_pattern=v*", "semver_range=>=1.20, <2", "policy=semver\nprerelease=true",
    "tag_pattern=*-alpine", "tag_regex=^(?P<version>\\d+\\.\\d+)-alpine$", "tag_regex=^\\d+$",
    "policy=digest", "policy=glob\ntag_pattern={1,2}.*",
]
for tsv in sorted((ROOT / "tests/fixtures/tags").glob("*.tsv")):
    lines = tsv.read_text().splitlines()
    head, body = lines[:1], lines[1:]
    for policy in random.sample(policies, 3):
        sample = sorted(random.sample(body, min(120, len(body))), key=body.index)
        current = random.choice(sample).split("\t")[0]
        put("tag_policy", f"{policy}\ncurrent={current}\n---\n" + "\n".join(head + sample) + "\n")

# Env files: NAME<TAB>VALUE, then the file.
seed_env = (ROOT / "tests/fixtures/config/seed.env").read_text()
envs = [
    seed_env,
    "WEB_IMAGE=nginx:1.25\nexport PG_TAG='16' # pinned\nQUOTED=\"a\\\"b\"\r\nMULTI=\"one\ntwo\"\n#C=1\n",
    "  TAG = 1.2.3   # comment\nEMPTY=\nUNCLOSED='x\n",
]
for env in envs:
    for name in re.findall(r"^\s*(?:export )?([A-Z_]+)\s*=", env, re.M):
        put("env_file", f"{name}\t{random.choice(['nginx:1.27', '17', 'a b', ''])}\n{env}")

# Configuration: the shipped default, the examples and the Auto-Updater's files.
for path in [ROOT / "config/lookout.toml", *sorted((ROOT / "config/examples").rglob("*.toml")),
             *sorted((ROOT / "config/examples").rglob("*.json")),
             ROOT / "tests/fixtures/config/updater_config.json"]:
    put("config", path.read_text())
put("config", 'health_timeout = "18446744073709551615s"\n[[services]]\nname = "a"\nimage = "${FUZZ_IMAGE}"\ncompose_file = "/x"\n')

# WWW-Authenticate (a header, then realm and service lines) and token answers.
for h in [
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
    'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull,push"',
    'Basic realm="Registry Realm"', 'bearer realm=http://127.0.0.1:5001/auth , service=local',
    'Bearer realm="a\\"b",error="insufficient_scope"',
]:
    put("www_authenticate", h)
put("www_authenticate", "https://auth.docker.io/token\nregistry.docker.io\n")
for t in ['{"token":"abc","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}',
          '{"access_token":"abc"}', '{"token":"","access_token":"x","expires_in":0}',
          '{"token":"t","expires_in":18446744073709551615}']:
    put("www_authenticate", t)

# Link headers.
for h in ['</v2/library/nginx/tags/list?last=1.27&n=100>; rel="next"',
          '<https://ghcr.io/v2/o/r/tags/list?last=v1&n=100>; rel="next"',
          '</v2/x/tags/list?n=1&last=a>; rel="prev", </v2/x/tags/list?n=1&last=b>; rel="next"',
          '<http://other.example/v2/x/tags/list?last=x>; rel = "next" ; type="x"']:
    put("link_header", h)

# Hook payloads: SOURCE, then the body.
hub = '{"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/","push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},"repository":{"comment_count":0,"date_created":1417494799,"description":"","dockerfile":"","full_description":"","is_official":false,"is_private":true,"is_trusted":true,"name":"testhook","namespace":"svendowideit","owner":"svendowideit","repo_name":"svendowideit/testhook","repo_url":"https://registry.hub.docker.com/u/svendowideit/testhook/","star_count":0,"status":"Active"}}'
registry = json.dumps({"events": [
    {"id": "320678d8-ca14-430f-8bb6-4ca139cd83f7", "timestamp": "2016-03-09T14:44:26.402973972-08:00", "action": "push",
     "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 708,
                "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf", "length": 708,
                "repository": "hello-world", "url": "http://192.168.100.227:5000/v2/hello-world/manifests/sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
                "tag": "latest"},
     "request": {"id": "6df24a34-0959-4923-81ca-14f09767db19", "addr": "192.168.64.11:42961", "host": "192.168.100.227:5000",
                 "method": "PUT", "useragent": "curl/7.38.0"},
     "actor": {}, "source": {"addr": "xtal.local:5000", "instanceID": "a53db899-3b4b-4a62-a067-8dd013beaca4"}},
    {"id": "2", "action": "pull", "target": {"repository": "other/x"}, "request": {"host": "127.0.0.1:5000"}}]})
github = json.dumps({"action": "published", "registry_package": {
    "id": 1, "name": "app", "namespace": "acme", "ecosystem": "CONTAINER", "package_type": "CONTAINER",
    "owner": {"login": "acme"},
    "package_version": {"id": 2, "version": "sha256:" + "ab" * 32, "name": "sha256:" + "ab" * 32,
                        "container_metadata": {"tag": {"name": "1.2.3", "digest": "sha256:" + "ab" * 32},
                                               "labels": {}, "manifest": {}},
                        "package_url": "ghcr.io/acme/app:1.2.3"},
    "registry": {"about_url": "https://docs.github.com/packages", "name": "GitHub CONTAINER registry",
                 "type": "CONTAINER", "url": "https://ghcr.io/acme", "vendor": "GitHub Inc"}},
    "repository": {"full_name": "acme/app"}, "sender": {"login": "octocat"}})
github_package = json.dumps({"action": "published", "package": {
    "id": 1, "name": "app", "namespace": "acme", "ecosystem": "container", "package_type": "container",
    "package_version": {"id": 2, "name": "sha256:" + "cd" * 32,
                        "container_metadata": {"tag": {"name": "v2.0.0", "digest": "sha256:" + "cd" * 32}},
                        "package_url": "ghcr.io/acme/app:v2.0.0"},
    "registry": {"url": "https://ghcr.io/acme", "vendor": "GitHub Inc"}},
    "repository": {"full_name": "acme/app"}, "sender": {"login": "octocat"}})
for source, body in [("github", github_package), ("dockerhub", hub), ("docker_hub", '{"push_data":{"tag":"1.27"},"repository":{"repo_name":"nginx"}}'),
                     ("registry", registry), ("distribution", registry), ("github", github),
                     ("gitlab", "{}")]:
    put("hook_payload", f"{source}\n{body}")
