"""
HTTP calls of the region scenario that python-openstackclient has no command for (it ships without the
barbican, designate, ironic and manila plugins) and horizon's login; standard library only, run by the
scenario inside the client's mount namespace (the region's Services in /etc/hosts), credentials from OS_*.

    python3 http_calls.py list SERVICE_TYPE PATH [HEADER=VALUE ...]   GET <public endpoint>PATH with a token
    python3 http_calls.py horizon URL                                  log in at URL/auth/login/ as OS_USERNAME

Prints the status and the start of the answer; exit 0 when the call succeeded.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Tuple


def token() -> Tuple[str, List[Dict[str, Any]]]:
    """A project-scoped token of OS_USERNAME and the catalog that comes with it."""
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": os.environ["OS_USERNAME"], "password": os.environ["OS_PASSWORD"],
        "domain": {"name": os.environ["OS_USER_DOMAIN_NAME"]}}}},
        "scope": {"project": {"name": os.environ["OS_PROJECT_NAME"],
                              "domain": {"name": os.environ["OS_PROJECT_DOMAIN_NAME"]}}}}}
    request = urllib.request.Request(os.environ["OS_AUTH_URL"].rstrip("/") + "/auth/tokens",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.headers["X-Subject-Token"], json.load(answer)["token"]["catalog"]


def list_call(service_type: str, path: str, headers: List[str]) -> int:
    value, catalog = token()
    urls = [e["url"] for s in catalog if s["type"] == service_type for e in s["endpoints"]
            if e["interface"] == "public" and e.get("region_id", e.get("region")) == os.environ["OS_REGION_NAME"]]
    if not urls:
        print(f"no public {service_type} endpoint in region {os.environ['OS_REGION_NAME']}")
        return 1
    url = urls[0].rstrip("/") + path
    extra = dict(h.split("=", 1) for h in headers)
    request = urllib.request.Request(url, headers={"X-Auth-Token": value, "Accept": "application/json", **extra})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            print(f"GET {url}: {answer.status} {answer.read(200)!r}")
            return 0
    except urllib.error.HTTPError as err:
        print(f"GET {url}: {err.code} {err.read(300)!r}")
        return 1


def horizon(url: str) -> int:
    """GET the login page, POST its form (csrf token, region, ...) with the admin's credentials; logged in
    when the answer is a page that is not the login page and offers to sign out."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = url.rstrip("/") + "/auth/login/"
    with opener.open(login, timeout=120) as answer:
        page = answer.read().decode()
        print(f"GET {login}: {answer.status}")
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    region = re.search(r'<select[^>]*name="region"[^>]*>\s*<option[^>]*value="([^"]*)"', page)
    if region:
        form["region"] = region.group(1)
    form.update(username=os.environ["OS_USERNAME"], password=os.environ["OS_PASSWORD"])
    if 'name="domain"' in page:
        form["domain"] = os.environ["OS_USER_DOMAIN_NAME"]
    request = urllib.request.Request(login, data=urllib.parse.urlencode(form).encode(), headers={"Referer": login})
    with opener.open(request, timeout=120) as answer:
        body = answer.read().decode(errors="replace")
        where = answer.geturl()
    ok = "/auth/login" not in where and "/auth/logout" in body
    print(f"POST {login}: landed on {where}, {'logged in' if ok else 'not logged in: ' + body[-300:]}")
    return 0 if ok else 1


def main(argv: List[str]) -> int:
    if argv[:1] == ["list"] and len(argv) >= 3:
        return list_call(argv[1], argv[2], argv[3:])
    if argv[:1] == ["horizon"] and len(argv) == 2:
        return horizon(argv[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
