"""kolla_entry.start.render: ${env:...} / ${file:...} placeholders; oslo interpolation untouched; no values leak."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from kolla_entry import log
from kolla_entry.errors import TemplateError
from kolla_entry.start.render import render


def _secret() -> str:
    return f"marker-{uuid.uuid4().hex}"


class TestPlaceholders:
    def test_env_and_default(self) -> None:
        out = render("a=${env:A}\nb=${env:B:-fallback}\nc=${env:C:-}\n", source="/t",
                     environ={"A": "one", "B": ""})
        # Shell semantics: the default also replaces an empty value.
        assert out.text == "a=one\nb=fallback\nc=\n"
        assert out.placeholders == 3

    def test_file_content_minus_one_trailing_newline(self, tmp_path: Path) -> None:
        (tmp_path / "pw").write_text("s3cret\n")
        (tmp_path / "crlf").write_bytes(b"w1n\r\n")
        (tmp_path / "two").write_text("x\n\n")
        text = f"p=${{file:{tmp_path}/pw}} q=${{file:{tmp_path}/crlf}} r=${{file:{tmp_path}/two}}"
        assert render(text, source="/t", environ={}).text == "p=s3cret q=w1n r=x\n"

    @pytest.mark.parametrize("text", [
        "connection = $database_connection\n",
        "url = ${database.connection}/x\n",
        "x = ${host}:$port\n",
        "price = $$5\n",
        "literal = $${env:HOME}\n",
        "other = ${envx:A} ${FILE:/x} ${env A}\n",
    ])
    def test_oslo_interpolation_passes_through(self, text: str) -> None:
        """oslo.config's $opt, ${group.opt} and $$ are not ours; $${env:X} is oslo's escaped literal."""
        assert render(text, source="/t", environ={"A": "1", "HOME": "/root"}).text == text


class TestErrors:
    def test_missing_env_names_file_line_and_placeholder(self) -> None:
        with pytest.raises(TemplateError) as info:
            render("[DEFAULT]\nhost = ${env:NODE_NAME}\n", source="/cfg/nova.conf", environ={})
        message = str(info.value)
        assert info.value.file == "/cfg/nova.conf"
        assert "line 2" in message and "${env:NODE_NAME}" in message and "not set" in message

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(TemplateError) as info:
            render(f"x\ny\npw=${{file:{tmp_path}/absent}}", source="/t", environ={})
        assert "line 3" in str(info.value) and "does not exist" in str(info.value)

    def test_a_file_bigger_than_a_secret_is_refused_without_reading_it_whole(self) -> None:
        """`${file:/dev/zero}` must end as a clean error, not an endless read."""
        with pytest.raises(TemplateError) as info:
            render("pw=${file:/dev/zero}\n", source="/t", environ={})
        assert "larger than 1024 KiB" in str(info.value) and "line 1" in str(info.value)

    @pytest.mark.parametrize(("text", "words"), [
        ("${file:relative/path}", "absolute"),
        ("${env:1BAD}", "valid environment variable name"),
        ("${env:}", "valid environment variable name"),
        ("a=${env:HOME\nb=1\n", "no closing }"),
        ("a=${file:/run/secrets/pw", "no closing }"),
        ("a=${file:${env:HOME}}", "cannot be nested"),
        ("a=${file:/etc/pass\x00wd}", "NUL"),
    ])
    def test_malformed_placeholders(self, text: str, words: str) -> None:
        with pytest.raises(TemplateError) as info:
            render(text, source="/t", environ={})
        assert words in str(info.value)

    def test_counts_the_other_unresolved_ones(self) -> None:
        with pytest.raises(TemplateError) as info:
            render("${env:A} ${env:B}\n${env:C}", source="/t", environ={})
        assert "${env:A}" in str(info.value) and "2 more" in str(info.value)

    def test_error_never_contains_a_resolved_value(self, tmp_path: Path) -> None:
        """A secret resolved before the failing placeholder stays out of the message."""
        secret = _secret()
        (tmp_path / "pw").write_text(secret)
        with pytest.raises(TemplateError) as info:
            render(f"pw=${{file:{tmp_path}/pw}} e=${{env:ALSO_SECRET}} x=${{env:MISSING}}", source="/t",
                   environ={"ALSO_SECRET": secret + "2"})
        assert secret not in str(info.value) and secret not in repr(info.value.args)

    def test_unreadable_file(self, tmp_path: Path) -> None:
        (tmp_path / "bin").write_bytes(b"\xff\xfe")
        with pytest.raises(TemplateError) as info:
            render(f"${{file:{tmp_path}/bin}}", source="/t", environ={})
        assert "not UTF-8" in str(info.value)


class TestSecrets:
    def test_resolved_values_are_masked_in_logs(self, tmp_path: Path) -> None:
        """Every resolved value is registered with the log redaction."""
        file_secret, env_secret = _secret(), _secret()
        (tmp_path / "pw").write_text(file_secret + "\n")
        render(f"${{file:{tmp_path}/pw}} ${{env:PW}}", source="/t", environ={"PW": env_secret})
        masked = log.redact(f"a {file_secret} b {env_secret}")
        assert file_secret not in masked and env_secret not in masked

    def test_tiny_values_are_not_registered(self) -> None:
        """Masking "yes" would garble every log line; such values cannot be secrets."""
        render("${env:FLAG}", source="/t", environ={"FLAG": "yes"})
        assert log.redact("yes") == "yes"
