// The sign-in page: the key goes in a POST form body only (never a URL, never browser storage).
import { initShell } from "./shell.js";

initShell();
const key = document.getElementById("key");
if (key) key.focus();
