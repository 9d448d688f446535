"""Open311 GeoReport v2: what a citizen-reporting app built for it sends and reads."""

from typing import Any
from xml.etree import ElementTree

from events.conftest import fresh_point, token
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer

BASE = "/open311/v2"


async def test_services_come_from_the_city_categories(events: AsyncTestClient[Any]) -> None:
    services = await events.get(f"{BASE}/services.json", headers={"Authorization": ""})
    assert services.status_code == 200
    listed = {s["service_code"]: s for s in services.json()}
    assert len(listed) == 33 and listed["0301"]["service_name"] == "井盖缺失破损"
    assert listed["0301"]["group"] == "公用设施" and listed["0301"]["type"] == "realtime"
    assert (await events.get(f"{BASE}/services/0301.json")).json()["service_code"] == "0301"
    missing = await events.get(f"{BASE}/services/9999.json")
    assert missing.status_code == 404
    assert missing.json() == [{"code": 404, "description": "no service 9999"}]
    assert (await events.get(f"{BASE}/discovery.json")).json()["endpoints"]


async def test_an_app_posts_a_request_and_follows_it(events: AsyncTestClient[Any],
                                                     events_issuer: LocalIssuer) -> None:
    app_key = events_issuer.token(unit="CMD", scopes=("cases:report",), sub="citizen-app")
    lon, lat = fresh_point()
    form = {"api_key": app_key, "service_code": "0302", "lat": str(lat), "long": str(lon),
            "description": "小区门口的路灯坏了三盏，晚上黑漆漆的", "first_name": "小明",
            "last_name": "王", "phone": "13611112222", "media_url": "https://img.example/1.jpg"}
    created = await events.post(f"{BASE}/requests.json", data=form,
                                headers={"Authorization": ""})
    assert created.status_code == 201, created.text
    (answer,) = created.json()
    request_id = answer["service_request_id"]
    read = await events.get(f"{BASE}/requests/{request_id}.json",
                            params={"api_key": app_key}, headers={"Authorization": ""})
    (request,) = read.json()
    assert (request["status"], request["service_code"], request["lat"]) == ("open", "0302", lat)
    assert request["agency_responsible"] == "城市管理局"
    assert request["media_url"] == "https://img.example/1.jpg"
    assert "phone" not in request and "13611112222" not in read.text
    # The city closes it; the app sees it closed.
    case_id = int(answer["service_notice"].split()[-1])
    for action in ("accept", "dispatch", "start", "finish", "verify", "close"):
        assert (await events.post(f"/cases/{case_id}/{action}", json={})).status_code == 200
    listed = await events.get(f"{BASE}/requests.json", params={
        "service_request_id": request_id, "status": "closed"}, headers=token(
        events_issuer, scopes=("cases:report",)))
    assert [r["status"] for r in listed.json()] == ["closed"]


async def test_open311_errors_are_open311_shaped(events: AsyncTestClient[Any],
                                                 events_issuer: LocalIssuer) -> None:
    no_key = await events.post(f"{BASE}/requests.json", data={"service_code": "0302"},
                               headers={"Authorization": ""})
    assert no_key.status_code == 401 and no_key.json()[0]["code"] == 401
    bad_key = await events.get(f"{BASE}/requests.json", params={"api_key": "nonsense"},
                               headers={"Authorization": ""})
    assert bad_key.status_code == 401
    headers = token(events_issuer, scopes=("cases:report",))
    for form, status in (({"description": "路灯坏了"}, 400),
                         ({"service_code": "9999", "description": "x"}, 404),
                         ({"service_code": "0302", "description": "路灯坏了", "lat": "north"}, 400),
                         ({"service_code": "0302", "description": "路灯坏了"}, 400)):
        response = await events.post(f"{BASE}/requests.json", data=form, headers=headers)
        assert response.status_code == status, (form, response.text)
        assert set(response.json()[0]) == {"code", "description"}
    assert (await events.get(f"{BASE}/requests/abc.json", headers=headers)).status_code == 404
    assert (await events.get(f"{BASE}/requests/1.rss", headers=headers)).status_code == 400


async def test_xml_clients_get_the_same_in_xml(events: AsyncTestClient[Any],
                                               events_issuer: LocalIssuer) -> None:
    """GeoReport v2's other format: the same resources, chosen by the `.xml` extension."""
    services = await events.get(f"{BASE}/services.xml", headers={"Authorization": ""})
    assert services.status_code == 200 and services.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(services.content)
    assert root.tag == "services" and len(root.findall("service")) == 33
    manhole = next(s for s in root if s.findtext("service_code") == "0301")
    assert manhole.findtext("service_name") == "井盖缺失破损"
    assert (manhole.findtext("metadata"), manhole.findtext("type")) == ("false", "realtime")
    definition = ElementTree.fromstring((await events.get(f"{BASE}/services/0301.xml")).content)
    assert (definition.tag, definition.findtext("service_code")) == ("service_definition", "0301")
    discovery = ElementTree.fromstring((await events.get(f"{BASE}/discovery.xml")).content)
    assert [f.text for f in discovery.iter("format")] == ["application/json", "text/xml"]

    app_key = events_issuer.token(unit="CMD", scopes=("cases:report",), sub="citizen-app")
    lon, lat = fresh_point()
    created = await events.post(f"{BASE}/requests.xml", headers={"Authorization": ""}, data={
        "api_key": app_key, "service_code": "0302", "lat": str(lat), "long": str(lon),
        "description": "公园东门的路灯不亮了", "phone": "13633334444"})
    assert created.status_code == 201, created.text
    (answer,) = ElementTree.fromstring(created.content).findall("request")
    request_id = answer.findtext("service_request_id")
    assert request_id and answer.findtext("service_notice", "").startswith("case ")

    for path, params in ((f"{BASE}/requests/{request_id}.xml", {}),
                         (f"{BASE}/requests.xml", {"service_request_id": request_id})):
        read = await events.get(path, params={"api_key": app_key, **params},
                                headers={"Authorization": ""})
        root = ElementTree.fromstring(read.content)
        assert root.tag == "service_requests", read.text
        (request,) = root.findall("request")
        assert (request.findtext("status"), request.findtext("service_code")) == ("open", "0302")
        assert float(request.findtext("lat", "")) == lat
        assert request.findtext("description") == "公园东门的路灯不亮了"
        assert "13633334444" not in read.text

    missing = await events.get(f"{BASE}/requests/999999999.xml", params={"api_key": app_key},
                               headers={"Authorization": ""})
    assert missing.status_code == 404
    error = ElementTree.fromstring(missing.content).find("error")
    assert error is not None and error.findtext("code") == "404"
    assert error.findtext("description") == "no request 999999999"
