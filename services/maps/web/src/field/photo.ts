// A photo's reference: its content hash, so the evidence names exactly this picture. The
// picture itself goes to the city's object store by the phone's own upload channel; CityOS
// keeps references, as it does for camera clips.

export async function photoReference(file: File): Promise<string> {
  if (crypto?.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    return `photo:sha256:${hex}`;
  }
  return `photo:${encodeURIComponent(file.name)}:${file.size}:${file.lastModified}`;
}
