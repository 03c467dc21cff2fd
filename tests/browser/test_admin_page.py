"""The admin page in a real browser: Debian's headless Chromium, driven by selenium.

Starts the real `myelin` binary with `admin_page.enabled`, creates an admin and a user by
shared-secret registration, signs in through the page's form, finds the user in the Users
view, deactivates them with the page's button (checked afterwards through the admin API),
and opens every view, saving a screenshot of each under $BROWSER_SCREENSHOTS (default
.build/browser-screenshots/), whose path is printed at the end.
"""
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECRET = "browser-test-shared-secret"
SCREENSHOTS = os.environ.get("BROWSER_SCREENSHOTS", os.path.join(ROOT, ".build", "browser-screenshots"))
VIEWS = ["users", "rooms", "reports", "tokens", "blocks", "runtime"]
ROOM_NAME = "Browser test room"
REPORT_REASON = "browser test report"
TOKEN = "browsertoken1"
BLOCKED = "203.0.113.0/24"


def _binary():
    path = os.environ.get("MYELIN_BIN")
    if path:
        return path
    bin_dir = subprocess.check_output(["swift", "build", "--show-bin-path"], cwd=ROOT, text=True).strip()
    return os.path.join(bin_dir, "myelin")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _register(base, username, password, admin):
    status, nonce = _call(base, "GET", "/_synapse/admin/v1/register")
    assert status == 200, nonce
    message = b"\0".join([nonce["nonce"].encode(), username.encode(), password.encode(),
                          b"admin" if admin else b"notadmin"])
    mac = hmac.new(SECRET.encode(), message, hashlib.sha1).hexdigest()
    status, reply = _call(base, "POST", "/_synapse/admin/v1/register", {
        "nonce": nonce["nonce"], "username": username, "password": password, "admin": admin, "mac": mac})
    assert status == 200, reply
    return reply


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    data = tempfile.mkdtemp(prefix="myelin-browser-")
    config = os.path.join(data, "myelin.yaml")
    with open(config, "w") as f:
        f.write("server_name: browser.test\n"
                "registration:\n  shared_secret: %s\n" % SECRET +
                "logging:\n  access_log: false\n"
                # Several sign-ins from 127.0.0.1 in a few seconds (the default burst is 3).
                "rate_limits:\n  login:\n    per_second: 1\n    burst: 20\n"
                "admin_page:\n  enabled: true\n  directory: %s\n" % os.path.join(ROOT, "admin-page"))
    proc = subprocess.Popen([_binary(), "serve", "--config", config, "--listen", f"127.0.0.1:{port}",
                             "--data-dir", os.path.join(data, "data")], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("myelin did not start")
    yield base
    proc.terminate()
    assert proc.wait(timeout=15) == 0, "myelin did not exit cleanly on SIGTERM"
    shutil.rmtree(data, ignore_errors=True)


def _chromium_binary():
    for path in (os.environ.get("CHROMIUM_BIN"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if path and os.path.exists(path):
            return path
    pytest.fail("Chromium is not installed (make deps installs Debian's chromium and chromium-driver)")


def _driver_binary():
    for path in (os.environ.get("CHROMEDRIVER_BIN"), "/usr/bin/chromedriver"):
        if path and os.path.exists(path):
            return path
    pytest.fail("chromedriver is not installed (Debian's chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _chromium_binary()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    profile = tempfile.mkdtemp(prefix="myelin-chromium-")
    options.add_argument("--user-data-dir=" + profile)
    driver = webdriver.Chrome(service=Service(executable_path=_driver_binary()), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, seconds=30):
    # A view that re-renders replaces its elements: a lookup that went stale is retried.
    return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))


def _loaded(driver, view):
    """Waits until the view finished loading (rows or a clean error)."""
    login_error = driver.find_element(By.ID, "login-error").text
    assert not login_error, login_error
    _wait(driver).until(lambda d: d.find_element(By.ID, "view-content").get_attribute("data-view") == view
                        and d.find_element(By.ID, "view-content").get_attribute("data-loaded"))


def _seed(base, owner_token, admin_token):
    """Something for each view to list: a room with a reported message, a registration
    token, a blocked range (a documentation range: the test's own 127.0.0.1 stays open).
    Returns what each view should show when its endpoint exists on this server."""
    status, room = _call(base, "POST", "/_matrix/client/v3/createRoom",
                         {"name": ROOM_NAME, "preset": "public_chat"}, token=owner_token)
    assert status == 200, room
    room_id = room["room_id"]
    status, sent = _call(base, "PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/t1" % urllib.parse.quote(room_id),
                         {"msgtype": "m.text", "body": "report me"}, token=owner_token)
    assert status == 200, sent
    status, joined = _call(base, "POST", "/_matrix/client/v3/join/%s" % urllib.parse.quote(room_id), {}, token=admin_token)
    assert status == 200, joined
    status, reported = _call(base, "POST", "/_matrix/client/v3/rooms/%s/report/%s" % (
        urllib.parse.quote(room_id), urllib.parse.quote(sent["event_id"])), {"reason": REPORT_REASON, "score": -100},
        token=admin_token)
    assert status == 200, reported
    # These two belong to other parts of the admin API: a 404 just means "not here yet".
    status, reply = _call(base, "POST", "/_synapse/admin/v1/registration_tokens/new", {"token": TOKEN}, token=admin_token)
    assert status in (200, 404), reply
    status, reply = _call(base, "POST", "/_synapse/admin/v1/security/ip/block", {"ip": BLOCKED, "reason": "browser test"},
                          token=admin_token)
    assert status in (200, 404), reply
    return {"rooms": ROOM_NAME, "reports": REPORT_REASON, "tokens": TOKEN, "blocks": BLOCKED}


def test_sign_in_list_deactivate_and_every_view(server, browser):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    _register(server, "root", "root-password-1", admin=True)
    victim = _register(server, "victim", "victim-password-1", admin=False)
    victim_id = victim["user_id"]
    admin_token = _register(server, "auditor", "auditor-password-1", admin=True)["access_token"]
    expected = _seed(server, victim["access_token"], admin_token)

    browser.get(server + "/_myelin/admin/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(server + "/_myelin/admin/")
    _wait(browser).until(EC.visibility_of_element_located((By.ID, "login-form")))
    browser.save_screenshot(os.path.join(SCREENSHOTS, "0-sign-in.png"))

    # A wrong password is refused on the page.
    browser.find_element(By.ID, "login-user").send_keys("root")
    browser.find_element(By.ID, "login-password").send_keys("wrong")
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser).until(lambda d: d.find_element(By.ID, "login-error").text != "")
    assert browser.find_element(By.ID, "app-view").get_attribute("hidden") is not None

    user = browser.find_element(By.ID, "login-user")
    user.clear()
    user.send_keys("root")
    password = browser.find_element(By.ID, "login-password")
    password.clear()
    password.send_keys("root-password-1")
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser).until(EC.visibility_of_element_located((By.ID, "app-view")))
    assert "@root:browser.test" in browser.find_element(By.ID, "session-user").text

    # Users: the victim is listed, active, with a Deactivate button.
    _loaded(browser, "users")
    row_selector = 'tr[data-user-id="%s"]' % victim_id
    error = browser.find_element(By.ID, "view-error")
    assert error.get_attribute("hidden") is not None, error.text
    row = _wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, row_selector))
    browser.save_screenshot(os.path.join(SCREENSHOTS, "1-users.png"))
    button = row.find_element(By.CSS_SELECTOR, "button.deactivate")
    button.click()  # arms
    _wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, row_selector + " button.deactivate").text
                         == "Confirm deactivate")
    browser.find_element(By.CSS_SELECTOR, row_selector + " button.deactivate").click()
    _wait(browser).until(lambda d: "Deactivated" in d.find_element(By.ID, "view-status").text)
    _wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, row_selector + " button.deactivate"))
    browser.save_screenshot(os.path.join(SCREENSHOTS, "2-users-after-deactivation.png"))

    # The API agrees: the user is deactivated and cannot sign in.
    query = urllib.parse.urlencode({"user_id": victim_id, "deactivated": "true"})
    status, listing = _call(server, "GET", "/_synapse/admin/v2/users?" + query, token=admin_token)
    assert status == 200, listing
    info = [u for u in listing.get("users", []) if u.get("name") == victim_id]
    assert len(info) == 1 and info[0].get("deactivated") is True, listing
    status, _ = _call(server, "POST", "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "victim"},
        "password": "victim-password-1"})
    assert status == 403

    # Every view opens: rows, or the endpoint's error shown cleanly.
    for index, view in enumerate(VIEWS, start=3):
        browser.find_element(By.CSS_SELECTOR, 'nav#views button[data-view="%s"]' % view).click()
        _loaded(browser, view)
        assert browser.find_element(By.ID, "view-title").text
        error = browser.find_element(By.ID, "view-error")
        if view in expected:
            # Either the seeded item is listed, or the endpoint's error is shown in place.
            content = browser.find_element(By.ID, "view-content").text
            if error.get_attribute("hidden") is None:
                assert error.text, view
                print("\n%s view: %s" % (view, error.text))
            else:
                assert expected[view] in content, (view, content)
        else:
            assert error.get_attribute("hidden") is not None, (view, error.text)
        if view == "runtime":
            # Two samples: rates appear once the page has refreshed.
            # The view re-renders on every refresh: read the text in one script call, so an
            # element replaced between a lookup and its read cannot go stale under us.
            text = lambda d, id: d.execute_script("return document.getElementById(arguments[0]).innerText", id)
            _wait(browser).until(lambda d: text(d, "rt-rps") not in ("", "…"))
            pools = text(browser, "runtime-pools")
            for kind in ("rooms", "sessions", "notifiers", "federation_destinations", "media_uploads", "pushers"):
                assert kind in pools
        browser.save_screenshot(os.path.join(SCREENSHOTS, "%d-%s.png" % (index, view)))

    # Signing out forgets the token.
    browser.find_element(By.ID, "sign-out").click()
    _wait(browser).until(EC.visibility_of_element_located((By.ID, "login-form")))
    assert browser.execute_script("return sessionStorage.length") == 0
    print("\nadmin page screenshots: " + SCREENSHOTS)


def test_page_is_escaped_and_sends_its_headers(server, browser):
    # A display name full of markup is shown as text.
    reply = _register(server, "markup", "markup-password-1", admin=False)
    status, _ = _call(server, "PUT", "/_matrix/client/v3/profile/%s/displayname" % urllib.request.quote(reply["user_id"]),
                      {"displayname": "<img src=x onerror=window.pwned=1><b>bold</b>"}, token=reply["access_token"])
    assert status == 200
    with urllib.request.urlopen(server + "/_myelin/admin/", timeout=10) as response:
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Content-Type"].startswith("text/html")
    browser.get(server + "/_myelin/admin/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(server + "/_myelin/admin/")
    _wait(browser).until(EC.visibility_of_element_located((By.ID, "login-form")))
    browser.find_element(By.ID, "login-user").send_keys("root")
    browser.find_element(By.ID, "login-password").send_keys("root-password-1")
    browser.find_element(By.ID, "login-submit").click()
    _loaded(browser, "users")
    error = browser.find_element(By.ID, "view-error")
    assert error.get_attribute("hidden") is not None, error.text
    _wait(browser).until(lambda d: "<b>bold</b>" in d.find_element(By.ID, "view-content").text)
    assert browser.execute_script("return window.pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#view-content img, #view-content b")
