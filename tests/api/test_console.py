"""The operator console (GET /console) in a real headless browser: Debian's chromium driven by
Playwright. Signing in, an execution appearing live, its receipt verified in the browser (and
refused once a byte of it is flipped), a cancel, a token revoked. Each page is saved as a
screenshot for docs/console.md."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from tests.conftest import Api, ServiceProcess

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "console"
CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'")
WAIT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: apt-get install chromium (scripts/setup installs it)"
    async with async_playwright() as playwright:
        # Debian's build, not a downloaded one; --no-sandbox: tests may run as root in a container.
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, service: ServiceProcess) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=service.base_url, viewport={"width": 1360, "height": 860})
    opened = await context.new_page()
    troubles: list[str] = []  # CSP violations and script errors show up here (a refused call is no trouble)
    opened.on("console", lambda message: troubles.append(message.text)
              if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    opened.on("pageerror", lambda error: troubles.append(str(error)))
    yield opened
    await context.close()
    assert troubles == [], troubles


async def _sign_in(page: Page, token: str) -> None:
    await page.goto("/console")
    await page.fill("#token", token)
    await page.click("#sign-in button[type=submit]")
    await expect(page.locator("#nav")).to_be_visible()


async def _shot(page: Page, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


async def test_the_page_and_its_assets_are_public_and_locked_down(api: Api) -> None:
    anonymous = api.as_token(None)
    status, html, headers = await anonymous.get("/console")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), html
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    page = html.decode()
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="/console/console.js">']
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere
    for name, media in (("console.js", "text/javascript"), ("verify.js", "text/javascript"),
                        ("console.css", "text/css")):
        status, body, headers = await anonymous.get(f"/console/{name}")
        assert status == 200 and headers["Content-Type"].split(";")[0] == media, name
        assert headers["Content-Security-Policy"] == CSP and body
    for other in ("/console/secrets.txt", "/console/index.html", "/console/console.js/x"):
        status, problem, _ = await anonymous.get(other)
        assert status == 404 and problem["type"] == "urn:executor:problem:not_found", (other, problem)
    # The scripts never build markup from data.
    for name in ("console.js", "verify.js"):
        assert "innerHTML" not in (REPO / "executor" / "api" / "console" / name).read_text()


async def test_an_operator_follows_verifies_and_cancels_executions(page: Page, api: Api,
                                                                   service: ServiceProcess) -> None:
    await _sign_in(page, service.operator_token)
    # The token is in this tab's sessionStorage: not in the URL, not in a cookie.
    assert service.operator_token not in page.url
    assert await page.context.cookies() == []
    assert await page.evaluate("sessionStorage.getItem('executor.console.token')") == service.operator_token

    # An execution submitted through the API appears in the list by itself.
    agent_id = await api.register(["cat"])
    await page.fill("input[name=agent_id]", agent_id)
    await page.click("form.filters button[type=submit]")
    record = await api.run(agent_id, {"hello": "console", "markup": "<img src=x onerror=alert(1)>"})
    assert record["status"] == "COMPLETED", record
    row = page.locator(f"tr[data-id='{record['id']}']")
    await expect(row.locator("td.status")).to_have_text("COMPLETED", timeout=WAIT_MS)

    # Its record, and its receipt checked in the browser against /v1/keys and /v1/log/head.
    await row.locator("a").first.click()
    await expect(page.locator("#status")).to_have_text("COMPLETED")
    # What the API returns goes in as text: the output's markup is shown, not made into an element.
    await expect(page.locator("#record")).to_contain_text("<img src=x onerror=alert(1)>")
    assert await page.locator("#record img").count() == 0
    await page.click("#verify")
    await expect(page.locator("#verdict .valid")).to_have_text("valid", timeout=WAIT_MS)
    await page.locator("details.body").nth(1).locator("summary").click()  # stdout
    await expect(page.locator("details.body").nth(1).locator("pre")).to_contain_text('"hello"')
    await _shot(page, "execution")

    # One base64 character of the signature flipped on the way: the page names the check that fails.
    async def flip(route: Route) -> None:
        response = await route.fetch()
        bundle: dict[str, Any] = await response.json()
        sig = bundle["envelope"]["signatures"][0]["sig"]
        bundle["envelope"]["signatures"][0]["sig"] = sig[:10] + ("B" if sig[10] == "A" else "A") + sig[11:]
        await route.fulfill(response=response, json=bundle)

    await page.route(re.compile(r"/v1/executions/[^/]+/receipt(\?.*)?$"), flip)
    await page.click("#verify")
    verdict = page.locator("#verdict .invalid").first
    await expect(verdict).to_contain_text("invalid: signature_invalid — the signature of", timeout=WAIT_MS)
    await page.unroute(re.compile(r"/v1/executions/[^/]+/receipt(\?.*)?$"))

    # A running execution, followed live, cancelled from the page.
    sleeper = await api.register(["sleep", "30"])
    status, running, _ = await api.post("/v1/executions", json={"agent_id": sleeper, "input": {}})
    assert status == 202, running
    await page.goto(f"/console#/executions/{running['id']}")
    await expect(page.locator("#status")).to_have_text("RUNNING", timeout=WAIT_MS)
    await page.click("#cancel")
    await expect(page.locator("#status")).to_have_text("CANCELLED", timeout=WAIT_MS)
    assert (await api.execution(running["id"]))["status"] == "CANCELLED"

    # The whole list, unfiltered: both executions, newest first.
    await page.goto("/console#/executions")
    await page.fill("input[name=agent_id]", "")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator(f"tr[data-id='{running['id']}'] td.status")).to_have_text("CANCELLED", timeout=WAIT_MS)
    await expect(page.locator(f"tr[data-id='{record['id']}'] td.status")).to_have_text("COMPLETED")
    await _shot(page, "executions")

    # A window of creation time, typed in the browser's own zone: from the running one's instant
    # (to the millisecond) on, it alone; before it, not it.
    local = await page.evaluate("""(iso) => { const d = new Date(iso);
        return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23); }""", running["created_at"])
    await page.fill("input[name=created_since]", local)
    await page.click("form.filters button[type=submit]")
    await expect(page.locator(f"tr[data-id='{record['id']}']")).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator(f"tr[data-id='{running['id']}']")).to_have_count(1)
    await page.fill("input[name=created_since]", "")
    await page.fill("input[name=created_before]", local)
    await page.click("form.filters button[type=submit]")
    await expect(page.locator(f"tr[data-id='{running['id']}']")).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator(f"tr[data-id='{record['id']}']")).to_have_count(1)


async def test_agents_fleet_and_tokens(page: Page, api: Api, service: ServiceProcess) -> None:
    agent_id = await api.register(["cat"])
    for n in range(3):
        await api.run(agent_id, {"n": n})
    await _sign_in(page, service.operator_token)

    await page.goto(f"/console#/agents/{agent_id}")
    await expect(page.locator("tr[data-version='1'] td").nth(4)).to_have_text("3", timeout=WAIT_MS)  # executions
    await expect(page.locator("tr[data-version='1'] td").nth(6)).to_have_text("100.0 %")  # success rate
    # The chart of executions per hour: one bar per hour of the last 24, the three runs in them.
    bars = page.locator("#hourly svg.chart rect.bar")
    await expect(bars).to_have_count(24)
    counts = [int(n) for n in await bars.evaluate_all("(rects) => rects.map((r) => r.dataset.executions)")]
    assert sum(counts) == 3 and sum(counts[-2:]) == 3, counts  # run just now: this hour (or the one before)
    await _shot(page, "agents")

    await page.goto("/console#/fleet")
    await expect(page.locator("#instance table.facts").first).to_contain_text("instance", timeout=WAIT_MS)
    await expect(page.locator("#queue .depth")).to_have_text(re.compile(r"^\d+$"))  # the shared job queue
    await expect(page.locator("#images table")).to_contain_text("executor/busybox:latest", timeout=WAIT_MS)
    await _shot(page, "fleet", full_page=False)  # the engine may hold many images

    # A token revoked from the page is marked revoked, and refused by the API.
    status, issued, _ = await api.post("/v1/tokens", json={"role": "user", "subject": "console-victim"})
    assert status == 201, issued
    await page.goto("/console#/tokens")
    row = page.locator(f"tr[data-id='{issued['id']}']")
    await expect(row.locator("td.state")).to_have_text("live", timeout=WAIT_MS)
    revoke = row.locator("button", has_text="Revoke")
    await revoke.click()
    await row.locator("button", has_text="Confirm revoke").click()  # asked once more
    await expect(row.locator("td.state")).to_contain_text("revoked", timeout=WAIT_MS)
    status, problem, _ = await api.as_token(issued["token"]).get("/v1/executions")
    assert status == 401, problem
    await _shot(page, "tokens")


async def test_a_user_token_sees_what_the_api_lets_it_see(page: Page, api: Api) -> None:
    user = await api.new_token("user")
    assert user.token is not None
    await _sign_in(page, user.token)
    await page.goto("/console#/fleet")
    # The API's problem, as its title and detail.
    await expect(page.locator("#instance .problem")).to_contain_text("Not allowed for this role", timeout=WAIT_MS)
    await page.goto("/console#/tokens")
    await expect(page.locator("#tokens .problem")).to_contain_text("Not allowed for this role", timeout=WAIT_MS)
    # A token the API refuses signs the page out.
    await page.evaluate("sessionStorage.setItem('executor.console.token', 'exe_not_a_token')")
    await page.goto("/console#/executions")
    await page.reload()
    await expect(page.locator("#sign-in")).to_be_visible(timeout=WAIT_MS)
