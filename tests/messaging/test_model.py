"""Bad input is refused with an error naming the field; templates render or say why not."""

from __future__ import annotations

import math

import pytest

from mktlab.errors import NotFoundError, ValidationError
from mktlab.messaging import CHANNELS, DeliveryResult, Message, Template, TemplateCatalog


def msg(**kw) -> Message:
    base = {"key": "k1", "user_id": "u1", "template": "news", "channels": ("push",), "ts": 1.7e9}
    base.update(kw)
    return Message(**base)


def test_channels_constant():
    assert CHANNELS == ("push", "sms", "wechat", "inapp", "email", "webhook")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"channels": ("push", "pigeon")}, "unknown channel 'pigeon'"),
        ({"channels": ()}, "message.channels: expected at least one channel"),
        ({"channels": ("push", "push")}, "'push' listed twice"),
        ({"ts": math.nan}, "message.ts"),
        ({"ts": math.inf}, "message.ts"),
        ({"ts": "yesterday"}, "message.ts"),
        ({"ts": True}, "message.ts"),
        ({"key": ""}, "message.key"),
        ({"key": "   "}, "message.key"),
        ({"user_id": ""}, "message.user_id"),
        ({"user_id": None}, "message.user_id"),
        ({"template": ""}, "message.template"),
        ({"tz": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"params": ["a"]}, "message.params"),
        ({"campaign_id": ""}, "message.campaign_id"),
    ],
)
def test_bad_message_names_the_field(kw, match):
    with pytest.raises(ValidationError, match=match):
        msg(**kw)


def test_message_normalises_channels_and_ts():
    m = msg(channels=["sms", "push"], ts=1_700_000_000)
    assert m.channels == ("sms", "push")
    assert isinstance(m.ts, float)
    assert msg(channels="sms").channels == ("sms",)


def test_result_validates_status():
    with pytest.raises(ValidationError, match=r"result\.status"):
        DeliveryResult("k", "lost", None, None, ())
    with pytest.raises(ValidationError, match="not_before"):
        DeliveryResult("k", "deferred", None, None, ())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("Hello {name", "malformed braces"),
        ("Hello name}", "malformed braces"),
        ("Hello {}", "positional"),
        ("Hello {0}", "positional"),
        ("Hello {user.name}", "attribute or index access"),
        ("Hello {user[0]}", "attribute or index access"),
        ("", "body must be a non-empty string"),
    ],
)
def test_template_body_checked_at_construction(body, match):
    with pytest.raises(ValidationError, match=match) as exc:
        Template("welcome", body)
    assert "welcome" in str(exc.value)


def test_template_render_and_missing_param():
    t = Template("promo", "{name}: {pct:.0f}% off, {{literally}}", title="For {name}")
    assert t.placeholders == {"name", "pct"}
    assert t.render({"name": "Ada", "pct": 12.4}) == ("Ada: 12% off, {literally}", "For Ada")
    with pytest.raises(ValidationError, match=r"template 'promo': missing parameter\(s\) 'pct'"):
        t.render({"name": "Ada"})
    with pytest.raises(ValidationError, match="template 'promo': cannot render"):
        t.render({"name": "Ada", "pct": "many"})


def test_template_channels_validated():
    with pytest.raises(ValidationError, match="unknown channel 'fax'"):
        Template("t", "x", channels=("fax",))
    t = Template("t", "x", channels=["sms"])
    assert t.allows("sms")
    assert not t.allows("push")
    assert Template("u", "x").allows("push")


def test_catalog_unknown_template_names_it(templates):
    with pytest.raises(NotFoundError, match="template 'nope' not found") as exc:
        templates.get("nope")
    assert "reminder" in str(exc.value)  # and says what exists
    assert templates.names() == ["news", "otp", "reminder"]
    assert "otp" in templates
    assert len(templates) == 3


def test_catalog_from_dict_and_yaml(tmp_path):
    spec = {
        "welcome": "Hi {name}",
        "otp": {"body": "Code {code}", "channels": ["sms"], "title": "Your code"},
    }
    cat = TemplateCatalog.from_dict(spec)
    assert cat.render("welcome", {"name": "Bo"}) == ("Hi Bo", None)
    assert cat.get("otp").channels == ("sms",)
    assert TemplateCatalog.from_dict({"templates": spec}).names() == ["otp", "welcome"]
    text = "templates:\n  welcome: 'Hi {name}'\n  otp: {body: 'Code {code}', channels: [sms]}\n"
    path = tmp_path / "templates.yaml"
    path.write_text(text)
    for source in (text, path, str(path)):
        assert TemplateCatalog.from_yaml(source).to_dict() == {
            "welcome": {"body": "Hi {name}"},
            "otp": {"body": "Code {code}", "channels": ["sms"]},
        }
    with pytest.raises(NotFoundError, match=r"missing\.yaml"):
        TemplateCatalog.from_yaml(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValidationError, match="template 'x': unknown key"):
        TemplateCatalog.from_dict({"x": {"body": "b", "subject": "s"}})
    with pytest.raises(ValidationError, match="malformed braces"):
        TemplateCatalog.from_yaml("bad: 'Hi {name'\n")
    with pytest.raises(ValidationError, match="'a' defined twice"):
        TemplateCatalog([Template("a", "x"), Template("a", "y")])
