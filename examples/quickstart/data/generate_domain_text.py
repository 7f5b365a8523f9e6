#!/usr/bin/env python3
"""Generate ``domain_text.txt``: Nimbus Drive help-center articles (plain text).

One article per canonical intent (see ``intents.py``) plus hand-written
overview articles.  Articles are separated by a blank line; the first line
of each article is its title.  Deterministic (no randomness beyond a seed).

    python examples/quickstart/data/generate_domain_text.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from intents import INTENTS  # noqa: E402

R = random.Random(7)

CATEGORY_NAMES = {
    "account": "Account", "billing": "Billing and plans", "storage": "Storage and quota", "files": "Files and Trash",
    "sync": "Sync and the desktop client", "sharing": "Sharing", "security": "Security", "desktop": "Desktop client",
    "mobile": "Mobile app", "api": "Developer API",
}
APPLIES = {
    "account": "web app", "billing": "web app", "storage": "web app, desktop client and mobile app",
    "files": "web app and desktop client", "sync": "desktop client on Windows and macOS",
    "sharing": "web app, desktop client and mobile app", "security": "web app", "desktop": "desktop client",
    "mobile": "mobile app for iPhone and Android", "api": "Nimbus Drive API",
}

OVERVIEW = [
    """Welcome to Nimbus Drive
Nimbus Drive is cloud storage for your files, photos and documents. You can use it in the web app, in the desktop client for Windows and macOS, and in the mobile app for iPhone and Android. Files you add on one device sync to all your other devices. You can share files and folders with a link or invite people to a shared folder, restore deleted files from the Trash, and go back to earlier versions of a file. Every account starts on the Free plan with 5 GB of storage.""",
    """Plans and pricing
Nimbus Drive has three plans. Free includes 5 GB, Plus includes 200 GB, and Pro includes 2 TB of storage. Plus and Pro add link passwords and link expiry, and Pro keeps file versions for 180 days instead of 30 days. You can pay monthly or yearly, by card or with PayPal. To change your plan, open Settings > Plan. Upgrades take effect right away, and downgrades start at your next billing date. Students get 50% off the Plus plan.""",
    """Getting started with the desktop client
Download the desktop client from the Nimbus Drive website, run the installer, and sign in. The desktop client creates a Nimbus Drive folder on your computer. Anything you put in that folder syncs to the web app and to your other devices. The Nimbus Drive icon in the menu bar or the system tray shows the sync status: a check mark means everything is up to date, and arrows mean files are syncing. Click the icon to pause sync, resume sync, or open Preferences.""",
    """Getting started with the mobile app
Install the Nimbus Drive mobile app from the App Store or Google Play and sign in with your Nimbus Drive account. The mobile app shows the same files and folders as the web app. You can open, share and upload files, turn on camera upload to back up photos, and make files available offline. The mobile app uploads files up to 4 GB each. For bigger files, use the web app or the desktop client.""",
    """Understanding sync
Sync keeps the same files on all your devices. When you change a file in the Nimbus Drive folder, the desktop client uploads the change, and your other devices download it. If the same file is edited on two devices before it syncs, Nimbus Drive keeps both and names one of them conflicted copy. Sync pauses when your storage is full, when you are offline, or when you pause it yourself from the Nimbus Drive icon. Selective sync lets you choose which folders are stored on each computer.""",
    """Understanding the Trash
When you delete a file or folder on any device, it goes to the Trash in the web app. Files stay in the Trash for 30 days, and you can restore them during that time. Files in the Trash still count toward your quota. After 30 days, or when you choose Empty trash, files are removed permanently and cannot be recovered.""",
    """Sharing basics
There are two ways to share in Nimbus Drive. A share link lets anyone with the link view a file or folder, even without a Nimbus Drive account. A shared folder lets people you invite by email address view or edit the files inside it. Shared folders appear in Shared with me for the people you invite. The owner of a shared folder pays for its storage. You can change link settings or remove people at any time from Share.""",
    """Keeping your account secure
Use a strong password that you do not use anywhere else, and turn on two-factor authentication in Settings > Security. Save your backup codes in a safe place. Check Settings > Security > Devices from time to time and sign out any device you do not recognize. Nimbus Drive never asks for your password or your two-factor codes by email or phone. Never share API tokens, card numbers or passwords in a support ticket.""",
    """Billing questions
All billing settings are in Settings > Billing. There you can change your payment method, download invoices, and request a refund within 14 days of a charge. If a payment fails, we try again after three days and email you each time. If you see two charges, the second one is usually a temporary authorization that disappears within 5 business days.""",
    """Using the Nimbus Drive API
The Nimbus Drive API lets your scripts and apps upload, download, list and share files. Create a token in Settings > Developer and send it in the Authorization header of each request. Tokens have scopes, such as read-only access. The API allows 600 requests per minute per token and answers 429 when you go over the limit. Revoke a token in Settings > Developer as soon as you no longer need it or if it was exposed.""",
    """Contacting support
You can reach Nimbus Drive support by email, by chat in the web app, or by phone on Plus and Pro plans. Tell us which device you use, which plan you are on, and what you already tried. Please do not include passwords, API tokens, card numbers or bank details in your message. Most questions are answered in the help center articles, for example how to reset your password, restore deleted files or fix sync.""",
    """Glossary
Web app: Nimbus Drive in your browser. Desktop client: the program for Windows and macOS that syncs the Nimbus Drive folder. Mobile app: the app for iPhone and Android. Quota: the storage included in your plan. Trash: where deleted files stay for 30 days. Version history: earlier versions of a file that you can restore. Share link: a link that lets anyone view a file or folder. Shared folder: a folder that invited people can view or edit. Conflicted copy: a second copy created when a file is edited on two devices at once. API token: a secret key that lets a script use the Nimbus Drive API.""",
]

TROUBLE = {
    "account": "If the steps above do not work, sign out of the web app, clear your browser cache, and try again in a private window.",
    "billing": "Billing changes can take a few minutes to show in Settings > Billing. Refresh the page if you do not see them.",
    "storage": "Storage numbers update within a few minutes after you delete or upload files.",
    "files": "If you cannot find a file, use the search bar in the web app and check the Trash.",
    "sync": "If sync problems continue, update the desktop client from Preferences > About and restart your computer.",
    "sharing": "People you share with receive an email from Nimbus Drive. Ask them to check their spam folder if it does not arrive.",
    "security": "If you think someone else has access to your account, reset your password first and then turn on two-factor authentication.",
    "desktop": "If the desktop client does not start, restart your computer and install the latest version from the Nimbus Drive website.",
    "mobile": "If the mobile app misbehaves, update it from the App Store or Google Play and sign in again.",
    "api": "API errors include a message field that explains what went wrong. Check it before you retry.",
}


def article(it) -> str:
    qs = list(it.questions)
    R.shuffle(qs)
    lines = [it.title]
    body = [f"Applies to: {APPLIES[it.tag]}. Category: {CATEGORY_NAMES[it.tag]}."]
    body.append(f"Customers often ask: \"{qs[0]}\"")
    body.append(it.answer)
    body.extend(it.notes)
    body.append(TROUBLE[it.tag])
    body.append(f"Related questions: \"{qs[1]}\" and \"{qs[2]}\"")
    lines.append(" ".join(s if s.endswith((".", "?", "!", '"')) else s + "." for s in body))
    return "\n".join(lines)


SKIP_STEPS = {"plan_storage_limits", "storage_full", "offline_files"}


def steps_article(it) -> str:
    """A second, step-by-step style article for the same intent."""
    parts = [p.strip() for p in it.answer.replace(", and ", ", ").split(". ")]
    first = parts[0]
    steps = [s.strip().rstrip(".") for s in first.split(", ") if s.strip()]
    if len(steps) < 2 or it.key in SKIP_STEPS:
        return ""
    steps = [s[5:] if s.startswith("then ") else s for s in steps]
    out = [f"{it.title}: step by step"]
    numbered = " ".join(f"Step {i}: {s[0].upper() + s[1:]}." for i, s in enumerate(steps, 1))
    tail = " ".join(p.rstrip(".") + "." for p in parts[1:])
    out.append((numbered + (" " + tail if tail else "")).strip())
    return "\n".join(out)


def main() -> None:
    docs = list(OVERVIEW)
    for it in INTENTS:
        docs.append(article(it))
        s = steps_article(it)
        if s:
            docs.append(s)
    path = HERE / "domain_text.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(docs)} articles)")


if __name__ == "__main__":
    main()
