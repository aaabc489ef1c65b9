"""Reading a backward-pass page back without a browser: its elements, its script's data
and the numbers packed in it (as the page's own script unpacks them)."""

from __future__ import annotations

import base64
import json
import zlib
from html.parser import HTMLParser

import numpy as np


class Element:
    """One element: its tag, attributes, classes, and the text inside it (children's too)."""

    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs = tag, attrs
        self.classes = set(attrs.get("class", "").split())
        self.text = ""
        self.children: list[Element] = []

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes):
                found.append(child)
            found += child.find_all(tag, cls)
        return found


VOID = {"meta", "br", "input", "img", "link", "hr"}


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("root", {})
        self.stack = [self.root]
        self.by_id: dict[str, Element] = {}

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if "id" in element.attrs:
            self.by_id[element.attrs["id"]] = element
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        for element in self.stack[1:]:
            element.text += data


class Page:
    """A page's elements (``root``, ``by_id``), its script's data, and its arrays."""

    def __init__(self, text: str):
        parser = _Parser()
        parser.feed(text)
        self.text, self.root, self.by_id = text, parser.root, parser.by_id
        self.data = json.loads(self.by_id["page-data"].text)
        raw = zlib.decompress(base64.b64decode(self.by_id["page-blob"].text.strip()))
        self.buffer = raw

    @property
    def cards(self) -> list[Element]:
        return self.root.find_all("article", "card")

    def array(self, ident: str) -> np.ndarray:
        """One packed array, flat, as the page's script decodes it."""
        entry = self.data["manifest"][ident]
        if entry["enc"] == "f4":
            return np.frombuffer(self.buffer, "<f4", entry["n"], entry["o"]).astype(np.float64)
        half = np.frombuffer(self.buffer, "<f2", entry["n"], entry["o"]).astype(np.float64)
        return half * entry["s"]

    def picture(self, pic_id: str) -> dict[str, np.ndarray]:
        """A picture's numbers in its kept shape: "manual" (or the values), and where the
        tape's version is there, "tape" (manual - difference) and "diff"."""
        pic = self.data["pictures"][pic_id]
        out = {"manual": self.array(pic["m"]).reshape(pic["dims"])}
        if pic["d"]:
            out["diff"] = self.array(pic["d"]).reshape(pic["dims"])
            out["tape"] = out["manual"] - out["diff"]
        return out

    def pictures_titled(self, start: str) -> list[dict]:
        return [p for p in self.data["pictures"].values() if p["title"].startswith(start)]
